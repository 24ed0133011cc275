"""One row of the sampler's step table: what a step needs, computed once before the loop."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepRow:
    """Everything one sampler step needs, computed once before the loop.

    ``a`` / ``a_next`` drive the solver; ``a_q`` (the nearest value of the 1000-step grid, at index
    ``quantized_index``) drives the v -> x0 conversion; ``model_timestep`` is what the DiT embeds.
    """

    index: int
    timestep: int
    model_timestep: float
    a: float
    a_next: float
    quantized_index: int
    a_q: float
    c_skip: float
    c_out: float
    guidance_scale: float
