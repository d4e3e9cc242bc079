"""PyTorch definitions of the LivePortrait networks, loading the official checkpoints unchanged."""

from .checkpoint import load, load_state_dicts
from .registry import NETWORK_NAMES, build

__all__ = ["NETWORK_NAMES", "build", "load", "load_state_dicts"]
