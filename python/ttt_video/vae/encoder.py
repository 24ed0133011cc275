"""The CogVideoX encoder network (`encoder.*` of diffusers' AutoencoderKLCogVideoX) and its time windows.

Spec 7.3 / 9.3: frames in [-1, 1] -> moments (mean and log-variance of the latent posterior). The encoder
uses plain GroupNorm (no SpatialNorm), whose statistics span the frames of the current window only, so
the result depends on the window size (diffusers encodes 8 frames at a time, the reference 48, this
package 16 by default; the first window takes the remainder: 17, 16, 16, ... frames for 16k + 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VAEConfig
from .conv import VAEConv2d, VAEConv3d
from .layers import CausalCache, CausalConv3d, remainder_first_windows

DEFAULT_ENCODE_WINDOW = 16


class GroupNormResnetBlock3D(nn.Module):
    """GroupNorm -> SiLU -> CausalConv3d k3 (x2), plus a 1x1x1 conv shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_channels, eps=eps)
        self.conv1 = CausalConv3d(in_channels, out_channels, kernel_size=3)
        self.norm2 = nn.GroupNorm(num_groups, out_channels, eps=eps)
        self.conv2 = CausalConv3d(out_channels, out_channels, kernel_size=3)
        self.conv_shortcut = VAEConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


def average_frame_pairs(x: Tensor) -> Tensor:
    """Halve the frames of `(B, C, t, h, w)`: an odd count keeps its first frame alone, then the mean of
    each consecutive pair follows ((1 + 2k) frames -> 1 + k); an even count averages all pairs."""
    if x.shape[2] % 2 == 1:
        first, rest = x[:, :, :1], x[:, :, 1:]
        return first if rest.shape[2] == 0 else torch.cat([first, average_frame_pairs(rest)], dim=2)
    b, c, t, h, w = x.shape
    return x.reshape(b, c, t // 2, 2, h, w).mean(dim=3)


class Downsample3D(nn.Module):
    """Optional time halving (`average_frame_pairs`), then per frame: zero pad right and bottom by one,
    Conv2d 3x3 stride 2 (h, w) -> (h // 2, w // 2)."""

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.compress_time = compress_time
        self.conv = VAEConv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        if self.compress_time:
            x = average_frame_pairs(x)
        b, c, t, h, w = x.shape
        frames = F.pad(x.transpose(1, 2).reshape(b * t, c, h, w), (0, 1, 0, 1))
        out = self.conv(frames)
        return out.reshape(b, t, out.shape[1], out.shape[2], out.shape[3]).transpose(1, 2)


class DownBlock3D(nn.Module):
    """`num_layers` GroupNormResnetBlock3D, then (if `add_downsample`) a Downsample3D.

    Without down-sampling this is also the encoder's mid block (same parameter names: `resnets.{j}`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_groups: int,
        eps: float,
        num_layers: int,
        add_downsample: bool,
        compress_time: bool = False,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            GroupNormResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, num_groups, eps)
            for i in range(num_layers)
        )
        self.downsamplers = (
            nn.ModuleList([Downsample3D(out_channels, compress_time)]) if add_downsample else None
        )

    def forward(self, x: Tensor, cache: CausalCache | None = None) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x, cache)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                x = downsampler(x)
        return x


class Encoder3D(nn.Module):
    """conv_in -> down blocks (narrowest first) -> mid (2 resnets) -> GroupNorm -> SiLU -> conv_out.

    Maps frames `(B, in_channels, f, H, W)` to moments `(B, 2 * latent_channels, t, H/8, W/8)`, mean
    channels first; the first `log2(temporal_compression_ratio)` down blocks also halve time.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = config.block_out_channels
        groups, eps = config.norm_num_groups, config.norm_eps
        self.conv_in = CausalConv3d(config.in_channels, widths[0], kernel_size=3)
        blocks = []
        previous = widths[0]
        for i, width in enumerate(widths):
            blocks.append(
                DownBlock3D(
                    previous,
                    width,
                    groups,
                    eps,
                    num_layers=config.layers_per_block,
                    add_downsample=i < len(widths) - 1,
                    compress_time=i < config.temporal_downsample_levels,
                )
            )
            previous = width
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = DownBlock3D(widths[-1], widths[-1], groups, eps, num_layers=2, add_downsample=False)
        # diffusers hard-codes eps 1e-6 for norm_out, whatever the config's norm_eps says.
        self.norm_out = nn.GroupNorm(groups, widths[-1], eps=1e-6)
        self.conv_out = CausalConv3d(widths[-1], 2 * config.latent_channels, kernel_size=3)

    def forward(self, frames: Tensor, cache: CausalCache | None = None) -> Tensor:
        """Encode one window of frames; `cache` carries every causal conv's context between windows."""
        x = self.conv_in(frames, cache)
        for block in self.down_blocks:
            x = block(x, cache)
        x = self.mid_block(x, cache)
        x = F.silu(self.norm_out(x))
        return self.conv_out(x, cache)


def frame_windows(
    num_frames: int, window: int = DEFAULT_ENCODE_WINDOW, temporal_ratio: int = 4
) -> list[tuple[int, int]]:
    """Pixel-frame ranges encoded one after another: [0, window + num_frames % window), then `window` each.

    49 frames -> [0, 17), [17, 33), [33, 49). `num_frames` must be `temporal_ratio * k + 1` and `window` a
    multiple of `temporal_ratio` (so every window after the first compresses to whole latent frames).
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"need a positive number of frames, got {num_frames!r}")
    if (num_frames - 1) % temporal_ratio != 0:
        below = num_frames - (num_frames - 1) % temporal_ratio
        raise ValueError(
            f"the VAE encodes {temporal_ratio}k+1 frames (1, {temporal_ratio + 1}, ..., 49, 145); got "
            f"{num_frames}. Trim the clip to {below} frames, or extend it to {below + temporal_ratio}."
        )
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % temporal_ratio:
        raise ValueError(
            f"the encode window must be a positive multiple of {temporal_ratio} frames "
            f"(the temporal compression), got {window!r}"
        )
    return remainder_first_windows(num_frames, window)


def downsampled_frame_count(frames: int, temporal_levels: int) -> int:
    """Frames after `temporal_levels` time-halving down-samplings (odd counts keep their first frame)."""
    for _ in range(temporal_levels):
        frames = 1 + (frames - 1) // 2 if frames % 2 == 1 else frames // 2
    return frames


def encoded_frame_count(
    num_frames: int, temporal_levels: int = 2, window: int = DEFAULT_ENCODE_WINDOW
) -> int:
    """Latent frames that `encode` returns: (F - 1) / 4 + 1 (49 -> 13, 145 -> 37)."""
    return sum(
        downsampled_frame_count(end - start, temporal_levels)
        for start, end in frame_windows(num_frames, window, 2**temporal_levels)
    )
