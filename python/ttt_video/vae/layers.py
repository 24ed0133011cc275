"""Building blocks of the CogVideoX VAE decoder (spec 7.1). Parameter names follow diffusers.

Every causal convolution takes an optional `CausalCache`: a dict owned by one decode call that maps each
convolution to the last `k_t - 1` frames of its time-padded input from the previous window. With a cache,
windows decoded one after another see the same temporal context as one long pass ("fake context
parallel" in the reference); without one, the first frame is replicated in front.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .conv import VAEConv2d, VAEConv3d

CausalCache = dict[nn.Module, Tensor]

# Inputs above this size are convolved in overlapping time chunks (like diffusers' SafeConv3d): the
# computation is the same, but some GPU convolution kernels fail on tensors over 2 GiB.
_MAX_CONV_INPUT_BYTES = 2 * 1024**3


def remainder_first_windows(num_frames: int, window: int) -> list[tuple[int, int]]:
    """Frame ranges ``[0, window + num_frames % window)``, then ``window`` frames each; one range when
    ``num_frames <= window``. The time windows of both the decoder (spec 7.2) and the encoder."""
    if num_frames <= window:
        return [(0, num_frames)]
    first = window + num_frames % window
    return [(0, first)] + [(start, start + window) for start in range(first, num_frames, window)]


class CausalConv3d(nn.Module):
    """Conv3d (stride 1) that is causal in time and keeps the spatial size.

    Time: `k_t - 1` frames are put in front of the input (from the cache, or copies of the first frame).
    Space: zero padding of `k // 2` on each side, done by the convolution itself (`conv.padding`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.time_pad = kernel_size - 1
        self.space_pad = kernel_size // 2
        self.conv = VAEConv3d(
            in_channels, out_channels, kernel_size, padding=(0, self.space_pad, self.space_pad)
        )

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        if self.time_pad > 0:
            previous = cache.get(self) if cache is not None else None
            if previous is None:
                previous = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x = torch.cat([previous, x], dim=2)
            if cache is not None:
                cache[self] = x[:, :, -self.time_pad :].clone()
        return self._convolve(x)

    def _convolve(self, x: Tensor) -> Tensor:
        if x.numel() * x.element_size() <= _MAX_CONV_INPUT_BYTES or x.shape[2] <= self.time_pad + 1:
            return self.conv(x)
        num_out = x.shape[2] - self.time_pad
        chunks = max(2, -(-x.numel() * x.element_size() // _MAX_CONV_INPUT_BYTES))
        step = -(-num_out // chunks)
        outputs = [
            self.conv(x[:, :, start : min(start + step, num_out) + self.time_pad])
            for start in range(0, num_out, step)
        ]
        return torch.cat(outputs, dim=2)


def resize_latents_to(zq: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Nearest-resize the latents `(B, C, t, h, w)` to `size = (T, H, W)` as SpatialNorm3D does.

    For an odd frame count T > 1 the first latent frame maps to the first frame alone and the remaining
    latent frames are stretched over the other T - 1 frames (the causal VAE's first frame is special).
    """
    frames = size[0]
    if frames > 1 and frames % 2 == 1:
        first = F.interpolate(zq[:, :, :1], size=(1, size[1], size[2]), mode="nearest")
        rest = F.interpolate(zq[:, :, 1:], size=(frames - 1, size[1], size[2]), mode="nearest")
        return torch.cat([first, rest], dim=2)
    return F.interpolate(zq, size=size, mode="nearest")


class SpatialNorm3D(nn.Module):
    """GroupNorm(f) * conv_y(zq) + conv_b(zq), with zq the latents resized to f's (t, h, w).

    The GroupNorm statistics span every frame of the current window (spec 7.2: per-window statistics).
    """

    def __init__(self, channels: int, latent_channels: int, num_groups: int) -> None:
        super().__init__()
        # diffusers hard-codes eps 1e-6 here, whatever the config's norm_eps says.
        self.norm_layer = nn.GroupNorm(num_groups, channels, eps=1e-6, affine=True)
        self.conv_y = CausalConv3d(latent_channels, channels, kernel_size=1)
        self.conv_b = CausalConv3d(latent_channels, channels, kernel_size=1)

    def forward(self, f: Tensor, zq: Tensor) -> Tensor:
        zq = resize_latents_to(zq, (f.shape[2], f.shape[3], f.shape[4]))
        return self.norm_layer(f) * self.conv_y(zq) + self.conv_b(zq)


class ResnetBlock3D(nn.Module):
    """SpatialNorm -> SiLU -> CausalConv3d (x2) plus a 1x1x1 conv shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, latent_channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm1 = SpatialNorm3D(in_channels, latent_channels, num_groups)
        self.conv1 = CausalConv3d(in_channels, out_channels, kernel_size=3)
        self.norm2 = SpatialNorm3D(out_channels, latent_channels, num_groups)
        self.conv2 = CausalConv3d(out_channels, out_channels, kernel_size=3)
        self.conv_shortcut = VAEConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, zq: Tensor, cache: CausalCache | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x, zq)), cache)
        h = self.conv2(F.silu(self.norm2(h, zq)), cache)
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


def upsample_nearest(x: Tensor, compress_time: bool) -> Tensor:
    """2x nearest in space; with `compress_time` also 2x in time, except that the first frame of an odd
    frame count (> 1) is doubled in space only, and a single frame is never doubled in time."""
    frames = x.shape[2]
    if not compress_time or frames == 1:
        return F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
    if frames % 2 == 1:
        first = F.interpolate(x[:, :, :1], scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        rest = F.interpolate(x[:, :, 1:], scale_factor=(2.0, 2.0, 2.0), mode="nearest")
        return torch.cat([first, rest], dim=2)
    return F.interpolate(x, scale_factor=(2.0, 2.0, 2.0), mode="nearest")


class Upsample3D(nn.Module):
    """Nearest up-sampling (see `upsample_nearest`) followed by a per-frame Conv2d 3x3."""

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.compress_time = compress_time
        self.conv = VAEConv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = upsample_nearest(x, self.compress_time)
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        out = self.conv(frames)
        return out.reshape(b, t, out.shape[1], h, w).transpose(1, 2)


class MidBlock3D(nn.Module):
    def __init__(self, channels: int, latent_channels: int, num_groups: int, num_layers: int = 2) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(channels, channels, latent_channels, num_groups) for _ in range(num_layers)
        )

    def forward(self, x: Tensor, zq: Tensor, cache: CausalCache | None = None) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x, zq, cache)
        return x


class UpBlock3D(nn.Module):
    """`num_layers` ResnetBlock3D, then (unless last) an Upsample3D."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        latent_channels: int,
        num_groups: int,
        num_layers: int,
        add_upsample: bool,
        compress_time: bool,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, latent_channels, num_groups)
            for i in range(num_layers)
        )
        self.upsamplers = nn.ModuleList([Upsample3D(out_channels, compress_time)]) if add_upsample else None

    def forward(self, x: Tensor, zq: Tensor, cache: CausalCache | None = None) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x, zq, cache)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                x = upsampler(x)
        return x
