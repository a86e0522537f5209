"""effvid: efficient video understanding.

Temporal Shift Module recognisers (offline and online) and parameter-efficient audio-visual
transformers, with a PyAV data pipeline and a command line (``effvid --help``).
"""

from .runtime import retain_freed_memory

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "retain_freed_memory", "__version__"]


def __getattr__(name: str):
    # Imported on first use: importing the package (which `python -m effvid` and the `effvid`
    # script do before the command line can catch a Ctrl-C) would otherwise import torch.
    if name in ("create_model", "list_models", "models"):
        # also effvid.models itself, which `import effvid` gave before (import_module: `from .
        # import models` would ask this function for it again)
        import importlib

        models = importlib.import_module(".models", __name__)
        return models if name == "models" else getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
