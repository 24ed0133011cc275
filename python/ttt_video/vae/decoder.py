"""The CogVideoX decoder network (`decoder.*` of diffusers' AutoencoderKLCogVideoX) and its time windows."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .config import VAEConfig
from .layers import CausalCache, CausalConv3d, MidBlock3D, SpatialNorm3D, UpBlock3D, remainder_first_windows


class Decoder3D(nn.Module):
    """conv_in -> mid (2 resnets) -> up blocks (widest first) -> SpatialNorm -> SiLU -> conv_out.

    Every SpatialNorm is conditioned on the decoder's own input latents `z` of the current window.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = list(reversed(config.block_out_channels))
        latent, groups = config.latent_channels, config.norm_num_groups
        self.conv_in = CausalConv3d(latent, widths[0], kernel_size=3)
        self.mid_block = MidBlock3D(widths[0], latent, groups, num_layers=2)
        blocks = []
        previous = widths[0]
        for i, width in enumerate(widths):
            blocks.append(
                UpBlock3D(
                    previous,
                    width,
                    latent,
                    groups,
                    num_layers=config.layers_per_block + 1,
                    add_upsample=i < len(widths) - 1,
                    compress_time=i < config.temporal_upsample_levels,
                )
            )
            previous = width
        self.up_blocks = nn.ModuleList(blocks)
        self.norm_out = SpatialNorm3D(widths[-1], latent, groups)
        self.conv_out = CausalConv3d(widths[-1], config.out_channels, kernel_size=3)

    def forward(self, z: Tensor, cache: CausalCache | None = None) -> Tensor:
        """Decode one window of latents `(B, C, t, h, w)`; `cache` carries context between windows."""
        x = self.conv_in(z, cache)
        x = self.mid_block(x, z, cache)
        for block in self.up_blocks:
            x = block(x, z, cache)
        x = F.silu(self.norm_out(x, z))
        return self.conv_out(x, cache)


def latent_windows(num_frames: int, window: int = 2) -> list[tuple[int, int]]:
    """Latent-frame ranges decoded one after another (spec 7.2).

    The first window takes `window + num_frames % window` frames and the others `window` frames, so that
    13 frames give [0, 3), [3, 5), ..., [11, 13). `window >= num_frames` gives one pass over everything.
    """
    if num_frames < 1:
        raise ValueError(f"need at least one latent frame, got {num_frames}")
    if window < 1:
        raise ValueError(f"the decode window must hold at least one latent frame, got {window}")
    return remainder_first_windows(num_frames, window)


def upsampled_frame_count(frames: int, temporal_levels: int) -> int:
    """Frames after `temporal_levels` time-doubling up-samplings (odd counts keep their first frame single)."""
    for _ in range(temporal_levels):
        if frames > 1:
            frames = 2 * frames - 1 if frames % 2 == 1 else 2 * frames
    return frames


def decoded_frame_count(num_latent_frames: int, temporal_levels: int = 2, window: int = 2) -> int:
    """Pixel frames that `decode` returns: 4(T - 1) + 1 for odd T with the default windows (13 -> 49)."""
    return sum(
        upsampled_frame_count(end - start, temporal_levels)
        for start, end in latent_windows(num_latent_frames, window)
    )
