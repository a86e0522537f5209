"""effvid: efficient video understanding.

Temporal Shift Module recognisers (offline and online) and parameter-efficient audio-visual
transformers, with a PyAV data pipeline and a command line (``effvid --help``).
"""

from .models import create_model, list_models
from .runtime import retain_freed_memory

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "retain_freed_memory", "__version__"]
