"""What `prepare` computes for one clip: its frames through the VAE encoder, its prompts through T5.

The settings come from the job config (``eval.sampling_fps``, ``eval.image_width/height``,
``eval.txt_maxlen``, ``eval.dtype``) and the encode window (``--window-frames``, 48 as the reference's
precompute, spec 7.3); the models from the bundle (``checkpoint.model_dir``: ``vae/`` loaded with its
encoder only, ``text_encoder/`` and ``tokenizer/``, or ``eval.t5_model_dir`` for T5).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..contracts.config import ConfigError, Issue, JobConfig
from ..contracts.storyboard import segment_prompts
from ..runner import NonFiniteError
from ..text import TextEncoder
from ..vae import CogVideoXVAE
from ..vae.weights import resolve_vae_folder, safetensors_files
from ..weights.errors import WeightsMissingError
from ..weights.safetensors_io import fingerprint
from .annotations import Annotation
from .clips import output_frame_count, read_clip_frames
from .dataset import FORMAT, VERSION, clip_paths

REFERENCE_WINDOW_FRAMES = 48  # spec 7.3: the reference encodes 48 frames at a time (the first window 49)
SEGMENT_LATENT_FRAMES = 12  # the DiT's segment (spec 2.2): 3 s at 16 fps, compressed 4x in time
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
Emit = Callable[..., Any]


@dataclass(frozen=True)
class PrepareSettings:
    fps: int
    width: int
    height: int
    txt_maxlen: int
    dtype: str  # eval.dtype: the VAE's and T5's, and so the stored tensors'
    window_frames: int

    @classmethod
    def from_config(cls, cfg: JobConfig, window_frames: int) -> PrepareSettings:
        e = cfg.eval
        return cls(e.sampling_fps, e.image_width, e.image_height, e.txt_maxlen, e.dtype, window_frames)


@dataclass
class PrepareModels:
    vae: CogVideoXVAE
    text: TextEncoder
    vae_fingerprint: str
    text_fingerprint: str
    bundle: Path


def _timed(emit: Emit, component: str, load: Callable[[], Any]) -> Any:
    emit("model.loading", component=component)
    started = time.perf_counter()
    model = load()
    emit("model.loaded", component=component, seconds=round(time.perf_counter() - started, 3))
    return model


def text_fingerprint(root: Path) -> str:
    """T5's weights (sampled, as every fingerprint) and its tokenizer files (whole: they are small)."""
    digest = hashlib.sha256(fingerprint(sorted((root / "text_encoder").glob("*.safetensors"))).encode())
    for file in sorted(p for p in (root / "tokenizer").iterdir() if p.is_file()):
        digest.update(file.name.encode() + b":" + file.read_bytes())
    return digest.hexdigest()[:16]


def load_prepare_models(cfg: JobConfig, device: torch.device, emit: Emit) -> PrepareModels:
    """The VAE encoder and T5 in ``eval.dtype`` on ``device``; each load reported by model.loading/loaded."""
    if cfg.eval.vae_checkpoint_path is not None:
        message = (
            "is not read by prepare, which encodes with the bundle's vae/ (checkpoint.model_dir); unset it"
        )
        raise ConfigError([Issue("eval.vae_checkpoint_path", message)])
    if cfg.checkpoint.model_dir is None:
        raise WeightsMissingError("no model: set checkpoint.model_dir to a model bundle (ttt-video convert)")
    bundle = Path(cfg.checkpoint.model_dir)
    if not (bundle / "vae").is_dir():
        raise WeightsMissingError(f"the VAE (vae/) not found in {bundle}; convert the CogVideoX-5b snapshot")
    dtype = DTYPES[cfg.eval.dtype]
    vae = _timed(
        emit,
        "vae",
        lambda: CogVideoXVAE.from_pretrained(bundle / "vae", device=device, dtype=dtype, parts=("encoder",)),
    )
    t5_root = Path(cfg.eval.t5_model_dir) if cfg.eval.t5_model_dir else bundle
    if not (t5_root / "text_encoder").is_dir():
        raise WeightsMissingError(f"the T5 encoder (text_encoder/) not found in {t5_root}")
    text = _timed(
        emit, "text_encoder", lambda: TextEncoder.from_pretrained(t5_root, device=device, dtype=dtype)
    )
    vae_print = fingerprint(safetensors_files(resolve_vae_folder(bundle / "vae")))
    return PrepareModels(vae, text, vae_print, text_fingerprint(t5_root), bundle)


def check_settings(settings: PrepareSettings, cfg: JobConfig, models: PrepareModels) -> list[str]:
    """Refuses settings the VAE cannot encode (ConfigError); returns warnings for ones the DiT cannot use."""
    vae = models.vae.config
    ratio, space = vae.temporal_compression_ratio, vae.spatial_compression_ratio
    issues = []
    if (3 * settings.fps) % ratio:
        message = f"is {settings.fps}: a 3 s segment must be a multiple of {ratio} frames for the VAE; use 16"
        issues.append(Issue("eval.sampling_fps", message))
    for name, size in (("image_width", settings.width), ("image_height", settings.height)):
        if size % space:
            issues.append(Issue(f"eval.{name}", f"is {size}; the VAE needs a multiple of {space}"))
    if settings.window_frames < 1 or settings.window_frames % ratio:
        message = (
            f"is {settings.window_frames}; the encode window must be a positive multiple of {ratio} frames"
        )
        issues.append(Issue("--window-frames", message))
    if cfg.eval.latent_channels != vae.latent_channels:
        message = f"is {cfg.eval.latent_channels} but the VAE makes {vae.latent_channels} latent channels"
        issues.append(Issue("eval.latent_channels", message))
    if issues:
        raise ConfigError(issues)
    per_segment = 3 * settings.fps // ratio
    if per_segment != SEGMENT_LATENT_FRAMES:
        return [
            f"eval.sampling_fps = {settings.fps} makes {per_segment} latent frames per 3 s segment but the "
            f"DiT's segments are {SEGMENT_LATENT_FRAMES} (16 fps); the dataset will not fit the model"
        ]
    return []


def dataset_info(settings: PrepareSettings, models: PrepareModels) -> dict[str, Any]:
    """The dataset.json of these settings and models."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "fps": settings.fps,
        "width": settings.width,
        "height": settings.height,
        "latent_channels": models.vae.config.latent_channels,
        "txt_maxlen": settings.txt_maxlen,
        "text_dim": models.text.model.config.d_model,
        "window_frames": settings.window_frames,
        "dtype": settings.dtype,
        "vae": models.vae_fingerprint,
        "text_encoder": models.text_fingerprint,
        "bundle": str(models.bundle.resolve()),
    }


def manifest_entry(annotation: Annotation, settings: PrepareSettings, latent_frames: int) -> dict[str, Any]:
    """The manifest line of a clip (written once its files are complete)."""
    segments = len(annotation.segments)
    return {
        "id": annotation.id,
        "annotation_line": annotation.line,
        "source": str(annotation.clip),
        "segments": segments,
        "frames": output_frame_count(segments, settings.fps),
        "latent_frames": latent_frames,
        **clip_paths(annotation.id),
        "prompts": segment_prompts(annotation.segments).prompts,
    }


def encode_clip(
    annotation: Annotation, settings: PrepareSettings, models: PrepareModels
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """``(manifest entry, moments (T, 2C, h, w), text (n, L, D))`` of one clip, tensors on the CPU in
    ``eval.dtype``. The frames are encoded ``window_frames`` at a time (``encode_stream``); each window's
    moments leave the device as soon as they exist."""
    count = output_frame_count(len(annotation.segments), settings.fps)
    vae = models.vae
    frames = read_clip_frames(
        annotation.clip, settings.fps, count, settings.width, settings.height, vae.dtype
    )
    windows = [m.cpu() for m in vae.encode_stream(frames, window=settings.window_frames)]
    moments = torch.cat(windows, dim=2)[0].permute(1, 0, 2, 3).contiguous()
    if not torch.isfinite(moments).all():
        raise NonFiniteError(f"the VAE gave NaN or infinite moments for {annotation.clip}; check its weights")
    prompts = segment_prompts(annotation.segments).prompts
    text = models.text.encode(prompts, settings.txt_maxlen).cpu()
    return manifest_entry(annotation, settings, moments.shape[0]), moments, text
