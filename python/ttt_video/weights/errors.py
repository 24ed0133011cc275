"""The two ways weights fail: they are not there, or they are there but unusable."""

from __future__ import annotations


class WeightsMissingError(FileNotFoundError):
    """The configured weights are not where the config says (error code WEIGHTS_MISSING)."""

    code = "WEIGHTS_MISSING"


class WeightsError(ValueError):
    """Weights that exist but cannot be used: truncated, corrupted, of another model (code WEIGHTS).

    The message names the file, says what is wrong with it and how to fix it.
    """

    code = "WEIGHTS"
