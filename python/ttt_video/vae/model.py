"""`CogVideoXVAE`: loads the decoder of a CogVideoX VAE and decodes latents to frames in time windows."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor, nn

from .config import COGVIDEOX_5B_VAE_CONFIG, VAEConfig
from .decoder import Decoder3D, decoded_frame_count, latent_windows
from .keys import sat_to_diffusers_key
from .layers import CausalCache

DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
DIFFUSERS_WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
DECODER_PREFIX = "decoder."
_LISTED_KEYS = 20


class VAEWeightsError(ValueError):
    """VAE weights that are missing, misshapen, or in a format this loader refuses."""


class CogVideoXVAE(nn.Module):
    """The CogVideoX 3-D causal VAE decoder (spec 7), parameters named as in diffusers (`decoder.*`).

    `decode(z)` maps latents `(B, C, T, h, w)` to frames `(B, 3, F, 8h, 8w)` in [-1, 1] with
    F = 4(T - 1) + 1 for odd T, decoding `window` latent frames at a time (the first window takes the
    remainder, 3 frames for odd T) and carrying every causal convolution's context across windows.
    """

    def __init__(self, config: VAEConfig, latent_scale: float | None = None) -> None:
        super().__init__()
        self.config = config
        self.latent_scale = _check_latent_scale(
            config.scaling_factor if latent_scale is None else latent_scale
        )
        self.decoder = Decoder3D(config)

    # ----------------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> CogVideoXVAE:
        """Load a diffusers `AutoencoderKLCogVideoX` folder (config.json + safetensors) as it is.

        `path` is the `vae/` folder or a bundle holding one. Only `decoder.*` tensors are read; the
        encoder and any other keys are ignored. `dtype=None` keeps the stored dtype. The default latent
        scale is the config's `scaling_factor`.
        """
        folder = _resolve_vae_folder(Path(path))
        config = VAEConfig.from_json_file(folder / "config.json")
        tensors = _read_safetensors(_safetensors_files(folder), prefix=DECODER_PREFIX)
        return cls._from_decoder_tensors(config, tensors, str(folder), None, device, dtype)

    @classmethod
    def from_sat_checkpoint(
        cls,
        file: str | Path,
        config: VAEConfig | Mapping | str | Path | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        latent_scale: float = 1.0,
    ) -> CogVideoXVAE:
        """Load the SAT / reference `3d-vae.pt` (keys renamed by spec 13.2, `loss.*` dropped).

        The file is read with `torch.load(weights_only=True)`: tensors only, no code is unpickled.
        `config` is a VAEConfig, a diffusers config dict or config.json path; default CogVideoX-5b.
        `latent_scale` defaults to 1.0, the reference's `eval.vae_scale_factor` (spec 7.4).
        """
        file = Path(file)
        config = _as_config(config)
        if not file.is_file():
            raise VAEWeightsError(f"{file}: no such file (expected the SAT VAE checkpoint, e.g. 3d-vae.pt)")
        try:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as error:
            raise VAEWeightsError(
                f"{file}: cannot be read as a tensors-only checkpoint ({type(error).__name__}: {error}). "
                "Only plain state dicts are accepted; objects that need code to unpickle are refused."
            ) from None
        state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else None
        if not isinstance(state, Mapping):
            raise VAEWeightsError(
                f"{file}: expected a dict of tensors (or {{'state_dict': ...}}), got {type(loaded)}"
            )
        num_levels = len(config.block_out_channels)
        tensors: dict[str, Tensor] = {}
        for key, value in state.items():
            renamed = sat_to_diffusers_key(str(key), num_levels)
            if renamed is not None and renamed.startswith(DECODER_PREFIX) and isinstance(value, Tensor):
                tensors[renamed] = value
        return cls._from_decoder_tensors(config, tensors, str(file), latent_scale, device, dtype)

    @classmethod
    def _from_decoder_tensors(
        cls,
        config: VAEConfig,
        tensors: dict[str, Tensor],
        source: str,
        latent_scale: float | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> CogVideoXVAE:
        with torch.device("meta"):
            vae = cls(config, latent_scale)
        check_decoder_tensors(vae.state_dict(), tensors, source, config)
        if dtype is None:
            stored = {t.dtype for t in tensors.values()}
            dtype = stored.pop() if len(stored) == 1 else torch.float32
        if not dtype.is_floating_point:
            raise VAEWeightsError(f"{source}: the VAE needs a floating-point dtype, got {dtype}")
        vae.load_state_dict(tensors, strict=True, assign=True)
        vae.to(device=device, dtype=dtype)
        vae.requires_grad_(False)
        return vae.eval()

    # ---------------------------------------------------------------------------------------- decoding

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

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


def _resolve_vae_folder(path: Path) -> Path:
    if path.is_file():
        raise VAEWeightsError(
            f"{path} is a file; from_pretrained expects a diffusers VAE folder (config.json + safetensors). "
            "A SAT 3d-vae.pt is loaded with CogVideoXVAE.from_sat_checkpoint."
        )
    for folder in (path, path / "vae"):
        if (folder / "config.json").is_file():
            return folder
    raise VAEWeightsError(
        f"{path}: no config.json here nor in {path / 'vae'}; expected a diffusers AutoencoderKLCogVideoX "
        "folder such as <CogVideoX-5b snapshot>/vae"
    )


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / DIFFUSERS_WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = sorted({folder / name for name in weight_map.values()})
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise VAEWeightsError(f"{index} lists shards that do not exist: {missing}")
        return files
    if (folder / DIFFUSERS_WEIGHTS_NAME).is_file():
        return [folder / DIFFUSERS_WEIGHTS_NAME]
    candidates = sorted(folder.glob("*.safetensors"))
    if len(candidates) == 1:
        return candidates
    if candidates:
        raise VAEWeightsError(
            f"{folder}: several .safetensors files {[c.name for c in candidates]} and no "
            f"{DIFFUSERS_WEIGHTS_INDEX_NAME}; keep one {DIFFUSERS_WEIGHTS_NAME}"
        )
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    hint = (
        f" Found {pickled}: pickle-based files are not loaded; convert them to safetensors first."
        if pickled
        else ""
    )
    raise VAEWeightsError(f"{folder}: no {DIFFUSERS_WEIGHTS_NAME}.{hint}")


def _read_safetensors(files: list[Path], prefix: str) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                if key.startswith(prefix):
                    tensors[key] = handle.get_tensor(key)
    return tensors


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED_KEYS])
    more = f", ... and {len(keys) - _LISTED_KEYS} more" if len(keys) > _LISTED_KEYS else ""
    return shown + more


def check_decoder_tensors(
    expected: Mapping[str, Tensor], found: Mapping[str, Tensor], source: str, config: VAEConfig
) -> None:
    """Raise VAEWeightsError naming every missing, misshapen or unexpected `decoder.*` tensor."""
    missing = sorted(k for k in expected if k not in found)
    unexpected = sorted(k for k in found if k not in expected)
    misshapen = sorted(
        f"{k} (expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)})"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listing(missing)}")
    if misshapen:
        problems.append(f"{len(misshapen)} misshapen: {_listing(misshapen)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
    if problems:
        architecture = (
            f"block_out_channels={list(config.block_out_channels)}, layers_per_block={config.layers_per_block}, "
            f"latent_channels={config.latent_channels}"
        )
        raise VAEWeightsError(
            f"{source}: the decoder weights do not match the architecture of the config ({architecture}). "
            + "; ".join(problems)
            + ". Check that config.json belongs to these weights and that they are a CogVideoX VAE."
        )
    not_float = sorted(k for k, v in found.items() if not v.dtype.is_floating_point)
    if not_float:
        raise VAEWeightsError(f"{source}: non-floating-point decoder tensors: {_listing(not_float)}")
