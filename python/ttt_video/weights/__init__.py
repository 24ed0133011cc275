"""Reading and writing weights: one safetensors reader, the diffusers conversion, DCP checkpoints."""

from .errors import WeightsError, WeightsMissingError

__all__ = ["WeightsError", "WeightsMissingError"]
