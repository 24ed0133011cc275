"""The demo model's recipe: which world data, VAE settings and text encoder `scripts/train-demo-model.py`
builds from a seed, and the steps before and after `ttt-video prepare` / `train` that are not the CLI's.

The DiT's training settings are the presets `configs/train/demo/{3s,9s}.toml`; the sampling settings
`configs/eval/demo/{3s,9s}.toml`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .dataset import write_dataset
from .vae_training import (
    VAETraining,
    fold_latent_scale,
    new_vae,
    reconstruction_psnr,
    save_vae,
    train_vae,
)
from .world import HEIGHT, WIDTH, Mix, render_video, sample_videos
from .world_text import make_world_text_encoder

TRAIN_MIX = Mix(cut=0.3, continuation=0.3, memory=0.4)  # 3-segment clips: enough memory segments


@dataclass(frozen=True)
class Recipe:
    """Everything the demo model is built from, apart from the DiT presets."""

    seed: int = 0
    # one-segment training clips (stage 3s). A clip is fixed by its text, so these already hold 401 of the
    # 450 training combinations; 2000 mostly repeat them (docs/benchmarks.md)
    clips_3s: int = 1000
    clips_9s: int = 300  # three-segment training clips (stage 9s)
    # 32 x 32 crops on the object (the background is easy; a crop costs a sixth of a frame), single
    # frames first (fast: colours and shapes), then 9-frame snippets (the temporal layers), then whole
    # frames briefly (the frame's borders)
    vae: tuple[VAETraining, ...] = (
        VAETraining(steps=1500, batch=32, frames=1, crop=(32, 32), crop_object=True, kl_weight=1e-4),
        VAETraining(steps=600, batch=16, frames=9, crop=(32, 32), crop_object=True, kl_weight=1e-4, lr=1e-3),
        VAETraining(steps=100, batch=4, frames=9, kl_weight=1e-4, lr=3e-4),
    )
    vae_clips: int = 200  # training clips the VAE sees (the first of each set)
    psnr_clips: int = 8  # held-out clips of 1 to 3 segments for the VAE's PSNR
    eval_videos: int = 32  # held-out 3-segment storyboards per model

    def to_json(self) -> dict:
        return asdict(self)


def write_world_data(recipe: Recipe, data_dir: Path) -> Path:
    """`data_dir/{3s,9s}/` clips of the training split and `data_dir/annotations.jsonl` naming both."""
    parts = [
        ("3s", recipe.clips_3s, 1, Mix()),
        ("9s", recipe.clips_9s, 3, TRAIN_MIX),
    ]
    lines = []
    for name, count, segments, mix in parts:
        folder = data_dir / name
        annotations = folder / "annotations.jsonl"
        if not annotations.exists():
            write_dataset(folder, count, segments, recipe.seed, "train", mix)
        for line in annotations.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            lines.append(json.dumps({**entry, "clip": f"{name}/{entry['clip']}"}) + "\n")
    combined = data_dir / "annotations.jsonl"
    combined.write_text("".join(lines), encoding="utf-8")
    return combined


def vae_training_clips(recipe: Recipe) -> list:
    """The first `vae_clips` videos of each training set, rendered (the same frames as the mp4s)."""
    per_set = recipe.vae_clips // 2
    specs = sample_videos(per_set, recipe.seed, 1, Mix(), "train")
    specs += sample_videos(per_set, recipe.seed, 3, TRAIN_MIX, "train")
    return [render_video(spec) for spec in specs]


def psnr_clips(recipe: Recipe) -> list:
    """Held-out clips (combinations no training clip shows) for the VAE's reconstruction PSNR."""
    return [
        render_video(s) for s in sample_videos(recipe.psnr_clips, recipe.seed + 1, (1, 3), split="heldout")
    ]


def build_vae(recipe: Recipe, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    """Train the VAE, fold its latent scale, save it (diffusers layout) in `out_dir`; returns a report
    `{"psnr_db", "latent_std_folded", "seconds", "settings"}` (PSNR on held-out clips, after folding)."""
    started = time.perf_counter()
    vae = new_vae(seed=recipe.seed)
    clips = vae_training_clips(recipe)
    for phase in recipe.vae:
        train_vae(vae.train().requires_grad_(True), clips, phase, log)
    scale = fold_latent_scale(vae, clips[:: max(1, recipe.vae_clips // 16)])
    psnr = reconstruction_psnr(vae, psnr_clips(recipe))
    save_vae(vae, out_dir, HEIGHT, WIDTH)
    report = {
        "psnr_db": round(psnr, 2),
        "latent_std_folded": round(scale, 4),
        "seconds": round(time.perf_counter() - started, 1),
        "settings": [asdict(phase) for phase in recipe.vae],
    }
    log(f"vae: held-out PSNR {psnr:.2f} dB, latents divided by {scale:.4f}, {report['seconds']} s")
    return report


def build_text_encoder(recipe: Recipe, parts_dir: Path) -> None:
    """The world tokenizer and the random T5 encoder in `parts_dir/{text_encoder,tokenizer}`."""
    make_world_text_encoder(parts_dir / "text_encoder", parts_dir / "tokenizer", recipe.seed)
