"""Which clips a rank trains on at each step, and the random draws that turn them into a batch (spec 9.1, 9.3).

Sample order: one endless stream of clip indices, epoch ``e`` being a permutation of the clips drawn from
seed ``ORDER_SEED + e`` (the reference's fixed seed 0). Data-parallel rank ``r`` of ``W`` takes every
``W``-th entry from the current position, so at one step the ``W`` ranks together take the next
``global_batch_size`` entries. The position (entries consumed by all ranks) is the sampler's whole state.

Random draws: every (step, data-parallel rank) has its own generator, seeded from ``job.seed``, the step
and the rank (``step_generator``). A batch draws from it, in this order: the posterior samples of the
latents, the text dropout, the timestep indices, the noise. Nothing random is carried from one step to
the next, so a checkpoint's step number restores every draw, and tensor-parallel peers (one data-parallel
rank) draw the same numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from .dataset import Clip, Dataset
from .loss import sample_latents, text_dropout
from .timesteps import sample_timestep_indices

ORDER_SEED = 0


def step_generator(seed: int, step: int, dp_rank: int) -> torch.Generator:
    """A CPU generator for the draws of optimiser step ``step`` (0-based) on data-parallel rank ``dp_rank``."""
    digest = hashlib.sha256(f"ttt-video-train:{seed}:{step}:{dp_rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


class SampleOrder:
    """The resumable sampler: a fixed-seed permutation per epoch, strided over data-parallel ranks."""

    def __init__(self, num_samples: int, position: int = 0, seed: int = ORDER_SEED) -> None:
        if num_samples < 1:
            raise ValueError(f"SampleOrder: num_samples must be >= 1, got {num_samples}")
        self.num_samples, self.position, self.seed = num_samples, position, seed
        self._epochs: dict[int, torch.Tensor] = {}

    def _entry(self, index: int) -> int:
        epoch, offset = divmod(index, self.num_samples)
        if epoch not in self._epochs:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._epochs = {epoch: torch.randperm(self.num_samples, generator=generator)}
        return int(self._epochs[epoch][offset])

    def indices(self, dp_rank: int, dp_world: int, local_batch: int) -> list[int]:
        """Rank ``dp_rank``'s ``local_batch`` clip indices of the next step (the position is not moved)."""
        return [self._entry(self.position + j * dp_world + dp_rank) for j in range(local_batch)]

    def advance(self, global_batch: int) -> None:
        self.position += global_batch

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "position": torch.tensor(self.position, dtype=torch.int64),
            "num_samples": torch.tensor(self.num_samples, dtype=torch.int64),
            "seed": torch.tensor(self.seed, dtype=torch.int64),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restores the position (and seed); the clip count stays this dataset's (see ``train.resumed``)."""
        self.position, self.seed = int(state["position"]), int(state["seed"])


@dataclass(frozen=True)
class Batch:
    """One rank's inputs of one step: ``latents``/``noise (B, T, C, h, w)`` float32, ``text (B, n, L, D)``,
    ``timesteps (B,)`` int64 grid indices, ``clips`` the clip ids (for the record)."""

    latents: torch.Tensor
    text: torch.Tensor
    timesteps: torch.Tensor
    noise: torch.Tensor
    clips: tuple[str, ...]

    def split(self, parts: int) -> list[Batch]:
        """``parts`` equal micro-batches (gradient accumulation); ``parts`` must divide the batch."""
        size = self.latents.shape[0]
        if size % parts:
            raise ValueError(f"training.grad_accum_steps = {parts} does not divide the local batch {size}")
        step = size // parts
        return [
            Batch(
                self.latents[i : i + step],
                self.text[i : i + step],
                self.timesteps[i : i + step],
                self.noise[i : i + step],
                self.clips[i : i + step],
            )
            for i in range(0, size, step)
        ]

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        return Batch(
            torch.cat([b.latents for b in batches]),
            torch.cat([b.text for b in batches]),
            torch.cat([b.timesteps for b in batches]),
            torch.cat([b.noise for b in batches]),
            tuple(c for b in batches for c in b.clips),
        )


def draw_batch(
    dataset: Dataset, clips: list[Clip], cfg: Any, step: int, dp_rank: int, dp_world: int
) -> Batch:
    """The batch of ``clips`` for ``step`` on data-parallel rank ``dp_rank`` of ``dp_world`` (on the CPU)."""
    generator = step_generator(cfg.job.seed, step, dp_rank)
    loaded = [dataset.load_clip(clip) for clip in clips]
    moments = torch.stack([m for m, _ in loaded])
    text = torch.stack([t for _, t in loaded])
    latents = sample_latents(moments, cfg.model.scale_factor, generator)
    text, _ = text_dropout(text, cfg.training.text_dropout, generator, dataset.null_text)
    timesteps = sample_timestep_indices(len(clips), dp_rank, dp_world, generator)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    return Batch(latents, text, timesteps, noise, tuple(c.id for c in clips))
