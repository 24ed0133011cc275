"""Architecture of the CogVideoX VAE, read from a diffusers `AutoencoderKLCogVideoX` config.json."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIFFUSERS_CLASS_NAME = "AutoencoderKLCogVideoX"
UP_BLOCK_TYPE = "CogVideoXUpBlock3D"
DOWN_BLOCK_TYPE = "CogVideoXDownBlock3D"


class VAEConfigError(ValueError):
    """A VAE config.json (or VAEConfig) that this decoder cannot build."""

    code = "WEIGHTS"


@dataclass(frozen=True)
class VAEConfig:
    """The fields of `AutoencoderKLCogVideoX` that shape the VAE; defaults are CogVideoX-5b's (spec 7.1).

    `scaling_factor` is the folder's latent scale (0.7 for CogVideoX-5b); `decode` divides latents by it
    unless the caller passes another `latent_scale` (TTT-Video checkpoints need 1.0, spec 7.4).
    `use_quant_conv` adds diffusers' 1x1x1 `quant_conv` after the encoder (false for CogVideoX-5b).
    """

    block_out_channels: tuple[int, ...] = (128, 256, 256, 512)
    layers_per_block: int = 3
    latent_channels: int = 16
    out_channels: int = 3
    in_channels: int = 3
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    temporal_compression_ratio: int = 4
    scaling_factor: float = 0.7
    act_fn: str = "silu"
    use_quant_conv: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        levels = len(self.block_out_channels)
        if levels < 1 or any(c <= 0 for c in self.block_out_channels):
            raise VAEConfigError(
                f"block_out_channels must be a non-empty list of positive ints, got {self.block_out_channels}"
            )
        for name in ("layers_per_block", "latent_channels", "out_channels", "in_channels", "norm_num_groups"):
            if int(getattr(self, name)) <= 0:
                raise VAEConfigError(f"{name} must be positive, got {getattr(self, name)}")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups != 0]
        if bad:
            raise VAEConfigError(
                f"norm_num_groups={self.norm_num_groups} must divide every entry of block_out_channels "
                f"{self.block_out_channels} (GroupNorm), but does not divide {bad}"
            )
        ratio = self.temporal_compression_ratio
        if ratio < 1 or ratio != 2 ** round(math.log2(ratio)) or round(math.log2(ratio)) > levels - 1:
            raise VAEConfigError(
                f"temporal_compression_ratio must be a power of two not above 2**(len(block_out_channels)-1) "
                f"= {2 ** (levels - 1)}, got {ratio}"
            )
        if self.act_fn not in ("silu", "swish"):
            raise VAEConfigError(f"act_fn must be 'silu' (x * sigmoid(x)), got {self.act_fn!r}")
        if not isinstance(self.use_quant_conv, bool):
            raise VAEConfigError(f"use_quant_conv must be true or false, got {self.use_quant_conv!r}")
        if not self.scaling_factor > 0:
            raise VAEConfigError(f"scaling_factor must be positive, got {self.scaling_factor}")

    @property
    def spatial_compression_ratio(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_upsample_levels(self) -> int:
        """How many of the first up blocks double time as well as space (log2 of the temporal ratio)."""
        return round(math.log2(self.temporal_compression_ratio))

    @property
    def temporal_downsample_levels(self) -> int:
        """How many of the first down blocks halve time as well as space (log2 of the temporal ratio)."""
        return round(math.log2(self.temporal_compression_ratio))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> VAEConfig:
        """Validate a diffusers config dict; missing fields take the CogVideoX-5b values, unknown ones are ignored."""
        class_name = data.get("_class_name")
        if class_name is not None and class_name != DIFFUSERS_CLASS_NAME:
            raise VAEConfigError(
                f"{source}: _class_name is {class_name!r}, expected {DIFFUSERS_CLASS_NAME!r}"
            )
        if data.get("use_post_quant_conv"):
            raise VAEConfigError(
                f"{source}: use_post_quant_conv=true is not supported (no CogVideoX VAE uses it)"
            )
        defaults = cls()
        fields: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            fields[name] = data.get(name, getattr(defaults, name))
        for key, expected in (("up_block_types", UP_BLOCK_TYPE), ("down_block_types", DOWN_BLOCK_TYPE)):
            _check_block_types(data.get(key), key, expected, len(fields["block_out_channels"]), source)
        try:
            return cls(
                block_out_channels=tuple(fields["block_out_channels"]),
                layers_per_block=int(fields["layers_per_block"]),
                latent_channels=int(fields["latent_channels"]),
                out_channels=int(fields["out_channels"]),
                in_channels=int(fields["in_channels"]),
                norm_num_groups=int(fields["norm_num_groups"]),
                norm_eps=float(fields["norm_eps"]),
                temporal_compression_ratio=int(fields["temporal_compression_ratio"]),
                scaling_factor=float(fields["scaling_factor"]),
                act_fn=str(fields["act_fn"]),
                use_quant_conv=fields["use_quant_conv"],
            )
        except VAEConfigError as error:
            raise VAEConfigError(f"{source}: {error}") from None
        except (TypeError, ValueError) as error:
            raise VAEConfigError(f"{source}: malformed field ({error})") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> VAEConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VAEConfigError(f"{path}: no such file (a diffusers VAE folder has a config.json)") from None
        except json.JSONDecodeError as error:
            raise VAEConfigError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise VAEConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(data, source=str(path))

    def to_diffusers_dict(self, sample_height: int = 480, sample_width: int = 720) -> dict[str, Any]:
        """The config.json that diffusers writes for this architecture."""
        levels = len(self.block_out_channels)
        return {
            "_class_name": DIFFUSERS_CLASS_NAME,
            "_diffusers_version": "0.32.2",
            "act_fn": self.act_fn,
            "block_out_channels": list(self.block_out_channels),
            "down_block_types": [DOWN_BLOCK_TYPE] * levels,
            "force_upcast": True,
            "in_channels": self.in_channels,
            "invert_scale_latents": False,
            "latent_channels": self.latent_channels,
            "latents_mean": None,
            "latents_std": None,
            "layers_per_block": self.layers_per_block,
            "norm_eps": self.norm_eps,
            "norm_num_groups": self.norm_num_groups,
            "out_channels": self.out_channels,
            "sample_height": sample_height,
            "sample_width": sample_width,
            "scaling_factor": self.scaling_factor,
            "shift_factor": None,
            "temporal_compression_ratio": self.temporal_compression_ratio,
            "up_block_types": [UP_BLOCK_TYPE] * levels,
            "use_post_quant_conv": False,
            "use_quant_conv": self.use_quant_conv,
        }


def _check_block_types(types: Any, key: str, expected: str, levels: int, source: str) -> None:
    if types is None:
        return
    wrong = [t for t in types if t != expected]
    if wrong:
        raise VAEConfigError(f"{source}: {key} must all be {expected!r}, got {wrong}")
    if len(types) != levels:
        raise VAEConfigError(
            f"{source}: {len(types)} {key} for {levels} block_out_channels; they must have the same length"
        )


COGVIDEOX_5B_VAE_CONFIG = VAEConfig()
