"""Type-check lpt's TensorRT code against the real Python API of TensorRT 10.x and 11.x, without TensorRT.

``python -m tools.trt_typecheck`` (or ``make typecheck-trt``); see ``typecheck.py``.
"""
