"""A tiny model bundle built from a seed: what the tests and the CPU demo run on.

`make_tiny_snapshot` writes a miniature of the public CogVideoX-5b snapshot (diffusers transformer with
CogVideoX key names, diffusers VAE, transformers T5 encoder, SentencePiece tokenizer) with random weights;
`make_tiny_bundle` converts it through the same `convert_diffusers` that converts the real weights.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..contracts.bundle import read_bundle_info, write_bundle_info
from ..models import TTTVideoDiT, build_config
from ..weights.convert import DIFFUSERS_INDEX, DIFFUSERS_WEIGHTS, convert_diffusers, ttt_to_diffusers_key
from .tiny_parts import make_tiny_text_encoder, make_tiny_vae

# The tiny latent grid: 8 x 12 latents (64 x 96 pixels), a 4 x 6 patch grid of 24 tokens per frame.
TINY_IMAGE_HEIGHT = 64
TINY_IMAGE_WIDTH = 96
TINY_TEXT_LENGTH = 8


def tiny_transformer_config() -> dict:
    """diffusers' CogVideoXTransformer3DModel config.json of the tiny model."""
    dit = build_config("tiny", ssm_layer="none")
    return {
        "_class_name": "CogVideoXTransformer3DModel",
        "_diffusers_version": "0.32.0",
        "num_attention_heads": dit.num_heads,
        "attention_head_dim": dit.head_dim,
        "in_channels": dit.in_channels,
        "out_channels": dit.out_channels,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "time_embed_dim": dit.time_embed_dim,
        "text_embed_dim": dit.text_dim,
        "num_layers": dit.num_layers,
        "dropout": 0.0,
        "attention_bias": True,
        "sample_width": TINY_IMAGE_WIDTH // 8,
        "sample_height": TINY_IMAGE_HEIGHT // 8,
        "sample_frames": 49,
        "patch_size": dit.patch_size,
        "temporal_compression_ratio": 4,
        "max_text_seq_length": TINY_TEXT_LENGTH,
        "activation_fn": "gelu-approximate",
        "timestep_activation_fn": "silu",
        "norm_elementwise_affine": True,
        "norm_eps": 1e-5,
        "spatial_interpolation_scale": 1.875,
        "temporal_interpolation_scale": 1.0,
        "use_rotary_positional_embeddings": True,
        "use_learned_positional_embeddings": False,
    }


def tiny_transformer_tensors(seed: int) -> dict[str, torch.Tensor]:
    """Random diffusers-named transformer weights: N(0, 0.05) matrices, unit norms, small biases."""
    with torch.device("meta"):
        model = TTTVideoDiT(build_config("tiny", ssm_layer="none"))
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, meta in model.state_dict().items():
        key = ttt_to_diffusers_key(name)
        assert key is not None, name
        if "norm" in name and name.endswith("weight"):
            value = 1 + 0.1 * torch.randn(meta.shape, generator=generator)
        elif name.endswith("bias"):
            value = 0.02 * torch.randn(meta.shape, generator=generator)
        else:
            value = 0.05 * torch.randn(meta.shape, generator=generator)
        tensors[key] = value.to(torch.float32).contiguous()
    return tensors


def make_tiny_snapshot(out: str | Path, seed: int = 0, *, transformer_shards: int = 1) -> Path:
    """A tiny CogVideoX-5b-layout snapshot in `out` (transformer/, vae/, text_encoder/, tokenizer/, scheduler/)."""
    out = Path(out)
    transformer = out / "transformer"
    transformer.mkdir(parents=True, exist_ok=True)
    (transformer / "config.json").write_text(json.dumps(tiny_transformer_config(), indent=2) + "\n")
    tensors = tiny_transformer_tensors(seed)
    if transformer_shards <= 1:
        save_file(tensors, str(transformer / DIFFUSERS_WEIGHTS), metadata={"format": "pt"})
    else:
        names = list(tensors)
        weight_map = {}
        for i in range(transformer_shards):
            part = names[i::transformer_shards]
            file = f"diffusion_pytorch_model-{i + 1:05d}-of-{transformer_shards:05d}.safetensors"
            save_file({n: tensors[n] for n in part}, str(transformer / file), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, file))
        index = {
            "metadata": {"total_size": sum(t.numel() * 4 for t in tensors.values())},
            "weight_map": weight_map,
        }
        (transformer / DIFFUSERS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    make_tiny_vae(out / "vae", seed=seed)
    make_tiny_text_encoder(out / "text_encoder", out / "tokenizer", seed=seed)
    scheduler = out / "scheduler"
    scheduler.mkdir(exist_ok=True)
    (scheduler / "scheduler_config.json").write_text(
        json.dumps(
            {
                "_class_name": "CogVideoXDPMScheduler",
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "prediction_type": "v_prediction",
                "rescale_betas_zero_snr": True,
                "snr_shift_scale": 1.0,
                "timestep_spacing": "trailing",
            },
            indent=2,
        )
        + "\n"
    )
    return out


def make_tiny_bundle(out: str | Path, seed: int = 0, ssm_layer: str = "ttt_mlp") -> Path:
    """A complete tiny TTT-Video bundle in `out`, deterministic from `seed` (a few seconds to build)."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="ttt-video-tiny-") as tmp:
        snapshot = make_tiny_snapshot(Path(tmp) / "snapshot", seed)
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        convert_diffusers(snapshot, partial, ssm_layer=ssm_layer, seed=seed, link=False)
        # the tiny model's own TTT mini-batch (16) fits its short sequences; the converter picks the
        # 5B defaults (64 for TTT-MLP)
        config_file = partial / "transformer" / "config.json"
        config = json.loads(config_file.read_text())
        config["mini_batch_size"] = build_config("tiny").mini_batch_size
        config_file.write_text(json.dumps(config, indent=2) + "\n")
        write_bundle_info(
            partial, **{**read_bundle_info(partial), "source": f"tiny random weights, seed {seed}"}
        )
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out
