"""Export of effvid models for edge devices (ONNX) and an ONNX Runtime runner.

Needs the optional ``export`` dependencies: ``pip install effvid[export]``.
"""

from .onnx import OnnxOnlineRunner, export_offline, export_online, read_metadata, run_offline

__all__ = ["OnnxOnlineRunner", "export_offline", "export_online", "read_metadata", "run_offline"]
