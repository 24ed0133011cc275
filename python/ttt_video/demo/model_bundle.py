"""The demo model's starting bundles: the trained VAE, the world's T5 and tokenizer, and a DiT initialised
from a seed, in the real bundle layout (what `ttt-video train --model` starts from).

The DiT starts as in DiT (Peebles & Xie): PyTorch's default initialisation (`TTTVideoDiT(config, seed)`)
with every adaLN modulation and the final projection set to zero ("adaLN-Zero"), so each block starts
as the identity and the first prediction is 0. The TTT-MLP bundle and the local-attention baseline
(`ssm_layer = "none"`) share every weight they both have: the baseline is the TTT-MLP model without its
TTT layers and gates. `with_ttt_layers` adds those layers to a trained local-attention model, as
TTT-Video adds them to CogVideoX.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch

from ..contracts.bundle import write_bundle_info
from ..models import TTTVideoDiT, build_config

DEMO_SIZE = "demo"


def demo_dit_config(ssm_layer: str, size: str = DEMO_SIZE):
    """The demo DiT's architecture (`model.size` preset `size`, its TTT mini-batch included) with
    `ssm_layer` ("ttt_mlp" or "none")."""
    return build_config(size, ssm_layer=ssm_layer)


def initial_dit(ssm_layer: str, seed: int, size: str = DEMO_SIZE) -> TTTVideoDiT:
    """The starting DiT: default initialisation from `seed`, adaLN-Zero. The baseline (`"none"`) takes
    the TTT-MLP model's weights for every parameter it has."""
    full = TTTVideoDiT(demo_dit_config("ttt_mlp", size), seed=seed)
    with torch.no_grad():
        for name, parameter in full.named_parameters():
            if "adaLN_modulation" in name or name.startswith("final_layer.linear"):
                parameter.zero_()
    if ssm_layer == "ttt_mlp":
        return full
    model = TTTVideoDiT(demo_dit_config(ssm_layer, size), seed=seed)
    state = full.state_dict()
    model.load_state_dict({name: state[name] for name in model.state_dict()}, strict=True)
    return model


def with_ttt_layers(pretrained: TTTVideoDiT, seed: int) -> TTTVideoDiT:
    """The local-attention DiT `pretrained` with TTT-MLP layers added, as TTT-Video adds them to
    CogVideoX: every weight it has is kept, the TTT layers and their gates get `initial_dit`'s values."""
    if pretrained.config.has_ttt:
        raise ValueError("with_ttt_layers: the model already has TTT layers (ssm_layer must be 'none')")
    config = dataclasses.replace(pretrained.config, ssm_layer="ttt_mlp")
    model = TTTVideoDiT(config, seed=seed)
    state = model.state_dict()
    state.update(pretrained.state_dict())
    model.load_state_dict(state, strict=True)
    return model


def write_initial_bundle(out: str | Path, parts: str | Path, dit: TTTVideoDiT, seed: int) -> Path:
    """A bundle in `out` with `vae/`, `text_encoder/` and `tokenizer/` copied from the folder `parts` (a
    bundle or the recipe's parts folder), `transformer/` = `dit` (drawn from `seed`) and `bundle.json`
    with latent scale 1.0: where a training stage starts. Replaces `out`."""
    out, parts = Path(out), Path(parts)
    missing = [p for p in ("vae", "text_encoder", "tokenizer") if not (parts / p).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{parts}: missing {', '.join(missing)}; train the VAE and write the T5 first"
        )
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for part in ("vae", "text_encoder", "tokenizer"):
        shutil.copytree(parts / part, partial / part)
    dit.save_pretrained(partial / "transformer")
    write_bundle_info(
        partial,
        latent_scale=1.0,
        source=f"demo world, initial weights (seed {seed}) before this stage's training",
        ssm_layer=dit.config.ssm_layer,
        seed=seed,
    )
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out
