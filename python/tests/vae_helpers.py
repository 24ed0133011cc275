"""Shared by the VAE tests: a per-frame GroupNorm, and a copy of the tiny VAE with edited weights."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor, nn

WEIGHTS = "diffusion_pytorch_model.safetensors"


class PerFrameGroupNorm(nn.Module):
    """GroupNorm with statistics per frame instead of per window (test-only replacement)."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        y = self.norm(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, c, h, w).transpose(1, 2)


def edited_folder(vae_dir: Path, tmp_path: Path, edit: Callable[[dict[str, Tensor]], None]) -> Path:
    """A copy of the VAE folder ``vae_dir`` in ``tmp_path / "vae"`` whose weights ``edit`` has changed."""
    folder = tmp_path / "vae"
    shutil.copytree(vae_dir, folder)
    tensors = load_file(folder / WEIGHTS)
    edit(tensors)
    save_file(tensors, folder / WEIGHTS)
    return folder
