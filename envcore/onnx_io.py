"""The old path of ONNX in and out (kept for users' imports): see `envcore.onnx`."""
from envcore.onnx.exporter import save_onnx, to_onnx
from envcore.onnx.importer import OnnxError, load_onnx
from envcore.onnx.opaque import EXPORT_OPSET, run_opaque

__all__ = ["OnnxError", "load_onnx", "save_onnx", "to_onnx", "run_opaque", "EXPORT_OPSET"]
