"""TensorRT engine builders for FP32, FP16 and INT8."""
