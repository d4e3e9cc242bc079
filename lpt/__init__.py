"""lpt: LivePortrait compiled to TensorRT, with ONNX Runtime and PyTorch backends."""

__version__ = "0.1.0"
