"""Transformer key names: diffusers CogVideoX <-> TTT-Video (reference-spec 8.5, 1-to-1 renames)."""

from __future__ import annotations

import re

GLOBAL_RENAMES = {
    "patch_embed.proj.": "patch_embedding.vid_proj.",
    "patch_embed.text_proj.": "patch_embedding.text_proj.",
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "norm_final.": "transformer_norm.",
    "norm_out.linear.": "final_layer.adaLN_modulation.1.",
    "norm_out.norm.": "final_layer.norm.",
    "proj_out.": "final_layer.linear.",
}
LAYER_RENAMES = {
    "norm1.linear.": "pre_seq_adaLN_modulation.1.",
    "norm1.norm.": "pre_seq_layernorm.",
    "norm2.linear.": "pre_mlp_adaLN_modulation.1.",
    "norm2.norm.": "pre_mlp_layernorm.",
    "attn1.to_q.": "seq_modeling_block.q.",
    "attn1.to_k.": "seq_modeling_block.k.",
    "attn1.to_v.": "seq_modeling_block.v.",
    "attn1.to_out.0.": "seq_modeling_block.o.",
    "attn1.norm_q.": "seq_modeling_block.q_norm.",
    "attn1.norm_k.": "seq_modeling_block.k_norm.",
    "ff.net.0.proj.": "mlp.layer1.",
    "ff.net.2.": "mlp.layer2.",
}
# The renames are 1-to-1, so each inverts to a dict (kept in the same order: the first match wins).
_INVERSE_GLOBAL_RENAMES = {new: old for old, new in GLOBAL_RENAMES.items()}
_INVERSE_LAYER_RENAMES = {new: old for old, new in LAYER_RENAMES.items()}
_DIFFUSERS_LAYER_KEY = re.compile(r"^transformer_blocks\.(\d+)\.(.+)$")
_TTT_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")


def _rename(
    key: str, layer_key: re.Pattern, layer_prefix: str, layer_renames: dict[str, str], renames: dict[str, str]
) -> str | None:
    """``key`` with its first matching prefix renamed: a layer key (``layer_key``: index, rest) by
    ``layer_renames`` under ``layer_prefix``, any other by ``renames``; None when no prefix matches."""
    match = layer_key.match(key)
    if match:
        index, rest = match.groups()
        for old, new in layer_renames.items():
            if rest.startswith(old):
                return f"{layer_prefix}.{index}.{new}{rest[len(old) :]}"
        return None
    for old, new in renames.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def diffusers_to_ttt_key(key: str) -> str | None:
    """The TTT-Video name of a diffusers CogVideoX transformer key, or None when it has none."""
    return _rename(key, _DIFFUSERS_LAYER_KEY, "layers", LAYER_RENAMES, GLOBAL_RENAMES)


def ttt_to_diffusers_key(key: str) -> str | None:
    """The inverse of `diffusers_to_ttt_key` (None for the TTT parameters, which diffusers lacks)."""
    return _rename(key, _TTT_LAYER_KEY, "transformer_blocks", _INVERSE_LAYER_RENAMES, _INVERSE_GLOBAL_RENAMES)
