"""ONNX in and out of the IR: `importer` (load_onnx), `exporter` (to_onnx, save_onnx) and
`opaque` (operators the IR does not know, run by onnxruntime)."""
