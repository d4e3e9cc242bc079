"""ONNX export of every network (issue: ONNX export, parity and TensorRT lint)."""
