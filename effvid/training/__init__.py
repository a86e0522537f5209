"""Training: :func:`train` runs one configuration (:class:`TrainConfig`) from start to end.

``from effvid.training import TrainConfig, train``; the modules are imported on first use (the
data and model packages import parts of this one, such as ``interrupts``).
"""

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name == "train":
        from .loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
