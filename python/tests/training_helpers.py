"""Shared by the training tests: a tiny DiT on 4x4 latents (a 2x2 patch grid) with text length 12, so that
the TTT sequence 1*12 + 13*4 = 64 is a multiple of the tiny preset's mini-batch 16 and a step takes ~0.1 s."""

from __future__ import annotations

import dataclasses

import torch

from ttt_video.contracts.config import load_config
from ttt_video.models import TTTVideoDiT, build_config

LATENT_H, LATENT_W, TEXT_LEN, FRAMES = 4, 4, 12, 13


def tiny_model(seed: int = 0, **overrides) -> TTTVideoDiT:
    return TTTVideoDiT.from_config(build_config("tiny", **overrides), seed=seed)


def tiny_batch(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, FRAMES, 16, LATENT_H, LATENT_W, generator=g)
    text = torch.randn(batch, 1, TEXT_LEN, 32, generator=g)
    noise = torch.randn(batch, FRAMES, 16, LATENT_H, LATENT_W, generator=g)
    return x0, text, noise


def optimizer_cfg(**changes):
    return dataclasses.replace(load_config().optimizer, **changes)


def training_cfg(**changes):
    return dataclasses.replace(load_config().training, **changes)
