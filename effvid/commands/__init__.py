"""Sub-commands of the ``effvid`` command line; each module defines ``register(subparsers)``."""
