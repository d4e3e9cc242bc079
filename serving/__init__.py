"""Serving lpt on NVIDIA Triton Inference Server: model repository, Python animation model, client, bench."""
