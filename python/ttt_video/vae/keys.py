"""VAE parameter names: SAT / reference `3d-vae.pt` <-> diffusers `AutoencoderKLCogVideoX` (spec 13.2)."""

from __future__ import annotations

import re

_SAT_DOWN_BLOCK = re.compile(r"^encoder\.down\.(\d+)\.block\.(\d+)\.")
_SAT_DOWNSAMPLE = re.compile(r"^encoder\.down\.(\d+)\.downsample\.")
_SAT_MID = re.compile(r"^(encoder|decoder)\.mid\.block_(\d+)\.")
_SAT_UP_BLOCK = re.compile(r"^decoder\.up\.(\d+)\.block\.(\d+)\.")
_SAT_UPSAMPLE = re.compile(r"^decoder\.up\.(\d+)\.upsample\.")

_DIFFUSERS_DOWN_BLOCK = re.compile(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.")
_DIFFUSERS_DOWNSAMPLE = re.compile(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.")
_DIFFUSERS_MID = re.compile(r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.")
_DIFFUSERS_UP_BLOCK = re.compile(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.")
_DIFFUSERS_UPSAMPLE = re.compile(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.")


def sat_to_diffusers_key(key: str, num_levels: int) -> str | None:
    """Rename one SAT VAE key; None for keys to drop (`loss.*`).

    SAT numbers decoder levels from the output side (`up.0` is the last, narrowest level) while diffusers
    numbers up blocks in execution order, hence `up.{i}` -> `up_blocks.{num_levels - 1 - i}`.
    """
    if key.startswith("loss."):
        return None
    if m := _SAT_DOWN_BLOCK.match(key):
        key = f"encoder.down_blocks.{m[1]}.resnets.{m[2]}." + key[m.end() :]
    elif m := _SAT_DOWNSAMPLE.match(key):
        key = f"encoder.down_blocks.{m[1]}.downsamplers.0." + key[m.end() :]
    elif m := _SAT_MID.match(key):
        key = f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}." + key[m.end() :]
    elif m := _SAT_UP_BLOCK.match(key):
        key = f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.resnets.{m[2]}." + key[m.end() :]
    elif m := _SAT_UPSAMPLE.match(key):
        key = f"decoder.up_blocks.{num_levels - 1 - int(m[1])}.upsamplers.0." + key[m.end() :]
    return key.replace(".nin_shortcut.", ".conv_shortcut.")


def diffusers_to_sat_key(key: str, num_levels: int) -> str:
    """The inverse of `sat_to_diffusers_key` (for tests and for writing SAT-named files)."""
    if m := _DIFFUSERS_DOWN_BLOCK.match(key):
        key = f"encoder.down.{m[1]}.block.{m[2]}." + key[m.end() :]
    elif m := _DIFFUSERS_DOWNSAMPLE.match(key):
        key = f"encoder.down.{m[1]}.downsample." + key[m.end() :]
    elif m := _DIFFUSERS_MID.match(key):
        key = f"{m[1]}.mid.block_{int(m[2]) + 1}." + key[m.end() :]
    elif m := _DIFFUSERS_UP_BLOCK.match(key):
        key = f"decoder.up.{num_levels - 1 - int(m[1])}.block.{m[2]}." + key[m.end() :]
    elif m := _DIFFUSERS_UPSAMPLE.match(key):
        key = f"decoder.up.{num_levels - 1 - int(m[1])}.upsample." + key[m.end() :]
    return key.replace(".conv_shortcut.", ".nin_shortcut.")
