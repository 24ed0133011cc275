"""`CogVideoXVAE`: loads the encoder and/or decoder of a CogVideoX VAE and runs them in time windows."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import COGVIDEOX_5B_VAE_CONFIG, VAEConfig, VAEConfigError
from .conv import VAEConv3d, set_fast_cpu_convolutions
from .decoder import Decoder3D, decoded_frame_count, latent_windows
from .encoder import DEFAULT_ENCODE_WINDOW, Encoder3D, encoded_frame_count, frame_windows
from .layers import CausalCache
from .weights import (
    VAEWeightsError,
    check_parts,
    check_vae_tensors,
    part_prefixes,
    read_safetensors,
    read_sat_checkpoint,
    resolve_vae_folder,
    safetensors_files,
)

Parts = tuple[str, ...]


class CogVideoXVAE(nn.Module):
    """The CogVideoX 3-D causal VAE (spec 7), parameters named as in diffusers (`encoder.*`, `decoder.*`).

    Only the `parts` asked for are built and loaded: sampling needs `("decoder",)`, data preparation
    `("encoder",)`.

    * `encode(frames)` maps frames `(B, 3, F, H, W)` in [-1, 1], F = 4k + 1, to moments
      `(B, 2C, T, H/8, W/8)` (mean then logvar, unscaled), T = (F - 1) / 4 + 1, `window` frames at a time.
    * `decode(z)` maps latents `(B, C, T, h, w)` to frames `(B, 3, F, 8h, 8w)` in [-1, 1] with
      F = 4(T - 1) + 1 for odd T, `window` latent frames at a time.

    Both carry every causal convolution's context across windows, so memory does not grow with the clip
    length; GroupNorm statistics are per window (as in the reference and diffusers).
    """

    def __init__(
        self, config: VAEConfig, latent_scale: float | None = None, parts: Parts = ("decoder",)
    ) -> None:
        super().__init__()
        self.config = config
        self.parts = check_parts(parts)
        self.latent_scale = _check_latent_scale(
            config.scaling_factor if latent_scale is None else latent_scale
        )
        self.encoder = Encoder3D(config) if "encoder" in self.parts else None
        self.quant_conv = _quant_conv(config) if "encoder" in self.parts else None
        self.decoder = Decoder3D(config) if "decoder" in self.parts else None

    # ----------------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        parts: Parts = ("decoder",),
    ) -> CogVideoXVAE:
        """Load a diffusers `AutoencoderKLCogVideoX` folder (config.json + safetensors) as it is.

        `path` is the `vae/` folder or a bundle holding one. Only the tensors of `parts` are read
        (`decoder.*`; `encoder.*` and `quant_conv.*`), and every one of them must match the config.
        `dtype=None` keeps the stored dtype. The default latent scale is the config's `scaling_factor`.
        """
        parts = check_parts(parts)
        folder = resolve_vae_folder(Path(path))
        config = VAEConfig.from_json_file(folder / "config.json")
        tensors = read_safetensors(safetensors_files(folder), part_prefixes(parts))
        return cls._from_tensors(config, tensors, str(folder), None, device, dtype, parts)

    @classmethod
    def from_sat_checkpoint(
        cls,
        file: str | Path,
        config: VAEConfig | Mapping | str | Path | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        latent_scale: float = 1.0,
        *,
        parts: Parts = ("decoder",),
    ) -> CogVideoXVAE:
        """Load the SAT / reference `3d-vae.pt` (keys renamed by spec 13.2, `loss.*` dropped).

        The file is read with `torch.load(weights_only=True)`: tensors only, no code is unpickled.
        `config` is a VAEConfig, a diffusers config dict or config.json path; default CogVideoX-5b.
        `latent_scale` defaults to 1.0, the reference's `eval.vae_scale_factor` (spec 7.4).
        """
        parts = check_parts(parts)
        config = _as_config(config)
        levels = len(config.block_out_channels)
        tensors = read_sat_checkpoint(Path(file), levels, part_prefixes(parts))
        return cls._from_tensors(config, tensors, str(file), latent_scale, device, dtype, parts)

    @classmethod
    def _from_tensors(
        cls,
        config: VAEConfig,
        tensors: dict[str, Tensor],
        source: str,
        latent_scale: float | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        parts: Parts,
    ) -> CogVideoXVAE:
        try:
            with torch.device("meta"):
                vae = cls(config, latent_scale, parts)
        except VAEConfigError as error:
            raise VAEConfigError(f"{source}: {error}") from None
        check_vae_tensors(vae.state_dict(), tensors, source, config, vae.parts)
        if dtype is None:
            stored = {t.dtype for t in tensors.values()}
            dtype = stored.pop() if len(stored) == 1 else torch.float32
        if not dtype.is_floating_point:
            raise VAEWeightsError(f"{source}: the VAE needs a floating-point dtype, got {dtype}")
        vae.load_state_dict(tensors, strict=True, assign=True)
        vae.to(device=device, dtype=dtype)
        vae.requires_grad_(False)
        return vae.eval()

    # ------------------------------------------------------------------------------------------ common

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def set_fast_cpu_convolutions(self, enabled: bool) -> None:
        """Route CPU float32 convolutions to oneDNN (the default) or to PyTorch's usual choice (`conv.py`)."""
        set_fast_cpu_convolutions(self, enabled)

    def _require(self, part: str, action: str) -> None:
        if part not in self.parts:
            raise RuntimeError(
                f"cannot {action}: this CogVideoXVAE was loaded with parts={self.parts}; load it with "
                f"parts=({part!r},) (or ('encoder', 'decoder'))"
            )

    # ---------------------------------------------------------------------------------------- encoding

    def num_latent_frames(self, num_frames: int, window: int = DEFAULT_ENCODE_WINDOW) -> int:
        """Latent frames encoded from `num_frames` pixel frames (49 -> 13, 145 -> 37)."""
        return encoded_frame_count(num_frames, self.config.temporal_downsample_levels, window)

    def encode(self, frames: Tensor, *, window: int = DEFAULT_ENCODE_WINDOW) -> Tensor:
        """Frames `(B, in_channels, F, H, W)` in [-1, 1] -> moments `(B, 2C, T, H/8, W/8)` in the VAE's dtype.

        Channels `[:C]` are the posterior mean and `[C:]` its log-variance, unscaled (spec 9.3 stores them
        as they are; draw latents with `sample_from_moments`). F must be 4k + 1; T = (F - 1) / 4 + 1.
        `window` frames are encoded at a time (a multiple of 4; the first window takes the remainder:
        17, 16, 16, ... for the default 16). GroupNorm statistics are per window, so the moments depend
        on `window` (diffusers uses 8, the reference 48); the causal caches carry the rest exactly.
        """
        return torch.cat(list(self.encode_stream(frames, window=window)), dim=2)

    def encode_stream(self, frames: Tensor, *, window: int = DEFAULT_ENCODE_WINDOW) -> Iterator[Tensor]:
        """Like `encode`, but yields the moments `(B, 2C, t_i, h, w)` of each window as soon as they exist.

        Each window is moved to the VAE's device and dtype on its own, so only one window of frames is
        converted at a time. Concatenating the yielded tensors along dim 2 gives exactly `encode(frames)`.
        """
        self._require("encoder", "encode")
        windows = self._check_frames(frames, window)
        return self._encode_windows(frames, windows)

    def _encode_windows(self, frames: Tensor, windows: list[tuple[int, int]]) -> Iterator[Tensor]:
        cache: CausalCache = {}
        for start, end in windows:
            with torch.no_grad():
                chunk = frames[:, :, start:end].to(device=self.device, dtype=self.dtype)
                moments = self.encoder(chunk, cache)
                if self.quant_conv is not None:
                    moments = self.quant_conv(moments)
            yield moments

    def _check_frames(self, frames: Tensor, window: int) -> list[tuple[int, int]]:
        config = self.config
        if not isinstance(frames, Tensor) or frames.ndim != 5:
            shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
            raise ValueError(f"encode expects frames of shape (B, C, F, H, W), got {shape}")
        if frames.shape[1] != config.in_channels:
            raise ValueError(
                f"encode expects {config.in_channels} channels in dim 1 of (B, C, F, H, W), got shape "
                f"{tuple(frames.shape)}; frames laid out (B, F, C, H, W) need frames.permute(0, 2, 1, 3, 4)"
            )
        ratio = config.spatial_compression_ratio
        if frames.shape[3] % ratio or frames.shape[4] % ratio:
            raise ValueError(
                f"encode expects a height and width divisible by {ratio}, got {tuple(frames.shape[3:])}; "
                "crop or resize the frames (480x720 for CogVideoX)"
            )
        if not frames.dtype.is_floating_point:
            raise ValueError(
                f"encode expects float frames in [-1, 1], got {frames.dtype}; use 2 * x / 255 - 1"
            )
        return frame_windows(frames.shape[2], window, config.temporal_compression_ratio)

    # ---------------------------------------------------------------------------------------- decoding

    def num_frames(self, num_latent_frames: int, window: int = 2) -> int:
        """Pixel frames decoded from `num_latent_frames` (13 -> 49, 253 -> 1009)."""
        return decoded_frame_count(num_latent_frames, self.config.temporal_upsample_levels, window)

    def decode(
        self, z: Tensor, latent_scale: float | None = None, *, window: int = 2, clamp: bool = True
    ) -> Tensor:
        """Latents `(B, C, T, h, w)` -> frames `(B, out_channels, F, 8h, 8w)` in the VAE's dtype.

        `z` is divided by `latent_scale` (default: `self.latent_scale`). `window` latent frames are
        decoded at a time (2 as in the reference; `window >= T` decodes in one pass, which differs
        because GroupNorm statistics are per window). `clamp` limits the output to [-1, 1].
        """
        return torch.cat(list(self.decode_stream(z, latent_scale, window=window, clamp=clamp)), dim=2)

    def decode_stream(
        self, z: Tensor, latent_scale: float | None = None, *, window: int = 2, clamp: bool = True
    ) -> Iterator[Tensor]:
        """Like `decode`, but yields the frames `(B, C, f_i, H, W)` of each window as soon as they exist.

        Concatenating the yielded tensors along dim 2 gives exactly `decode(z)`.
        """
        self._require("decoder", "decode")
        z = self._prepare_latents(z, latent_scale)
        windows = latent_windows(z.shape[2], window)
        return self._decode_windows(z, windows, clamp)

    def _decode_windows(self, z: Tensor, windows: list[tuple[int, int]], clamp: bool) -> Iterator[Tensor]:
        cache: CausalCache = {}
        for start, end in windows:
            # Grad mode is entered and left within each step so that it never leaks to the consumer.
            with torch.no_grad():
                frames = self.decoder(z[:, :, start:end], cache)
                if clamp:
                    frames = frames.clamp(-1.0, 1.0)
            yield frames

    def _prepare_latents(self, z: Tensor, latent_scale: float | None) -> Tensor:
        if not isinstance(z, Tensor) or z.ndim != 5:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"decode expects latents of shape (B, C, T, h, w), got {shape}")
        if z.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"decode expects {self.config.latent_channels} latent channels in dim 1 of (B, C, T, h, w), "
                f"got shape {tuple(z.shape)}; latents laid out (B, T, C, h, w) need z.permute(0, 2, 1, 3, 4)"
            )
        scale = self.latent_scale if latent_scale is None else _check_latent_scale(latent_scale)
        return (z / scale).to(device=self.device, dtype=self.dtype)


# ------------------------------------------------------------------------------------------- helpers


def _quant_conv(config: VAEConfig) -> VAEConv3d | None:
    """diffusers' optional 1x1x1 conv after the encoder, built as `Conv3d(2 * out_channels, same, 1)`.

    diffusers sizes it by the *output image* channels although it is applied to the 2 * latent_channels
    moments, so it only works when the two are equal; refuse other configs here rather than at encode.
    """
    if not config.use_quant_conv:
        return None
    if config.out_channels != config.latent_channels:
        raise VAEConfigError(
            f"use_quant_conv=true needs out_channels == latent_channels (diffusers builds quant_conv with "
            f"2 * out_channels = {2 * config.out_channels} channels and applies it to the "
            f"2 * latent_channels = {2 * config.latent_channels} moments); no CogVideoX VAE sets it"
        )
    return VAEConv3d(2 * config.out_channels, 2 * config.out_channels, 1)


def _check_latent_scale(scale: float) -> float:
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"latent_scale must be a positive number, got {scale}")
    return scale


def _as_config(config: VAEConfig | Mapping | str | Path | None) -> VAEConfig:
    if config is None:
        return COGVIDEOX_5B_VAE_CONFIG
    if isinstance(config, VAEConfig):
        return config
    if isinstance(config, Mapping):
        return VAEConfig.from_dict(config)
    return VAEConfig.from_json_file(config)
