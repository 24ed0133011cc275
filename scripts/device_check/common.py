"""What the device check's items share: the settings of a mode, the incrementally written result, and
random models, inputs and timing on the device."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_dit
import torch
from torch import nn
from ttt_video.models import SequenceLayout, TTTVideoDiT
from ttt_video.models.ttt import TanhGate, TTTBase


@dataclass(frozen=True)
class Settings:
    """What an item measures: the 5B preset in bf16 on CUDA, or (smoke) the tiny one in fp32 on a CPU."""

    smoke: bool
    device: torch.device
    dtype: torch.dtype
    preset: str
    latent: tuple[int, int]  # latent H x W

    @classmethod
    def of(cls, smoke: bool) -> Settings:
        if smoke:
            return cls(True, torch.device("cpu"), torch.float32, "tiny", (8, 12))
        return cls(False, torch.device("cuda", 0), torch.bfloat16, "5B", (60, 90))


class Result(dict):
    """An item's result, written to ``path`` (atomically) whenever it changes."""

    def __init__(self, path: Path) -> None:
        super().__init__(status="ok")
        self.path = path

    def update(self, *args: Any, **fields: Any) -> None:
        super().update(*args, **fields)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self, indent=2, default=str))
        os.replace(tmp, self.path)


# --------------------------------------------------------------------------------------------- helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def random_dit(
    cfg, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> TTTVideoDiT:
    """The DiT with random weights drawn on ``device`` (the model's own init draws 7 B numbers on one CPU
    thread): linear and conv layers U(+-1/sqrt(fan_in)), LayerNorms (1, 0), TTT inner weights and
    learning-rate heads N(0, 0.02), TTT norms (1, 0), gates ``gating_alpha_init``, other biases 0."""
    model = TTTVideoDiT.from_config(cfg, device="meta", dtype=dtype).to_empty(
        device=device
    )
    generator = torch.Generator(device=device).manual_seed(seed)
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, nn.LayerNorm):
                p.fill_(1.0 if name == "weight" else 0.0)
            elif isinstance(module, (nn.Linear, nn.Conv2d)):
                bound = 1.0 / math.sqrt(
                    math.prod(module.weight.shape[1:])
                )  # fan_in, for weight and bias
                p.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, TanhGate):
                p.fill_(cfg.gating_alpha_init)
            elif name in ("W1", "W2", "learnable_ttt_lr_weight"):
                p.normal_(0.0, 0.02, generator=generator)
            else:
                p.fill_(1.0 if name == "ttt_norm_weight" else 0.0)
    return model.eval().requires_grad_(False)


def set_ttt_kernel(model: TTTVideoDiT, kernel: str) -> None:
    """Which TTT scan every layer runs ("eager" | "triton" | "auto"); read at every call."""
    for module in model.modules():
        if isinstance(module, TTTBase):
            module.kernel = kernel


def video_inputs(cfg, s: Settings, seconds: int, batch: int = 1):
    """``(layout, (latents, text, timesteps))`` of a ``seconds``-long video on the device, random."""
    n, frames = seconds // 3, 12 * (seconds // 3) + 1
    grid = (s.latent[0] // cfg.patch_size, s.latent[1] // cfg.patch_size)
    length = bench_dit.text_length_for(seconds, cfg, grid, 8)
    g = torch.Generator(device=s.device).manual_seed(seconds)
    latents = torch.randn(
        batch,
        frames,
        cfg.in_channels,
        *s.latent,
        generator=g,
        device=s.device,
        dtype=s.dtype,
    )
    text = torch.randn(
        batch, n, length, cfg.text_dim, generator=g, device=s.device, dtype=s.dtype
    )
    timesteps = torch.full((batch,), 999.0, device=s.device)
    return SequenceLayout(n, length, frames, *grid), (latents, text, timesteps)


def timed(fn, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` calls, under inference mode."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - start)
    return times


def matmul_rate(s: Settings) -> float:
    return bench_dit.measure_matmul_rate(s.device, s.dtype, 512 if s.smoke else 8192)


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
