"""Training the demo model's tiny VAE on demo-world clips, and measuring it the way the pipeline uses it.

The VAE is `ttt_video.vae.CogVideoXVAE` (the class that loads the real CogVideoX VAE) with tiny widths.
Training draws short snippets (`frames` frames, optionally a spatial crop) of the world's clips, encodes
them in one window, samples a latent from the posterior, decodes it in the 2-latent-frame windows that
sampling uses and minimises `MSE(frames in [-1, 1]) + kl_weight * KL(posterior || N(0, 1))` (both means
over elements) with AdamW and a one-cycle learning rate.

`reconstruction_psnr` measures what the pipeline sees: `prepare`'s encode (48-frame windows), the
posterior mean, sampling's decode (2-latent windows), uint8 frames. `fold_latent_scale` rescales the
weights so that the latents have unit standard deviation with a latent scale of 1.0 (the decoder gives
the same frames), so bundles, `model.scale_factor` and `eval.vae_scale_factor` all stay at 1.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..vae import CogVideoXVAE, VAEConfig, latent_windows
from .tiny_parts import TINY_VAE_CONFIG

# the tiny bundle's VAE architecture with 16 channels at full resolution (8 drew the 18 px shapes too
# blurred to tell apart); its latent scale is folded into the weights after training
DEMO_VAE_CONFIG = dataclasses.replace(
    TINY_VAE_CONFIG, block_out_channels=(16, 16, 16, 16), scaling_factor=1.0
)
CROP_JITTER = 8  # px: an object-centred crop's centre moves up to this far from the object's centre
PREPARE_WINDOW_FRAMES = 48  # `ttt-video prepare`'s default encode window
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


@dataclass(frozen=True)
class VAETraining:
    """Settings of `train_vae`. `crop` (height, width), multiples of 8, or None for whole frames; with
    `crop_object` each crop is centred on the snippet's object (random places otherwise)."""

    steps: int = 600
    batch: int = 4
    frames: int = 9  # 4k + 1
    crop: tuple[int, int] | None = None
    crop_object: bool = False
    lr: float = 3e-3
    kl_weight: float = 1e-3
    object_weight: float = 1.0  # loss weight of pixels that differ from the frame's corner (the object)
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch < 1 or self.frames < 1 or (self.frames - 1) % 4:
            raise ValueError(f"VAETraining needs steps, batch >= 1 and frames = 4k + 1, got {self}")
        if self.crop is not None and any(c <= 0 or c % 8 for c in self.crop):
            raise ValueError(f"VAETraining.crop must be (height, width) in multiples of 8, got {self.crop}")


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """`(B, F, H, W, 3)` uint8 -> `(B, 3, F, H, W)` float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """`(B, 3, F, H, W)` in [-1, 1] -> `(B, F, H, W, 3)` uint8 (rounded, clamped)."""
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 4, 1).numpy()


def object_pixels(frames: np.ndarray) -> np.ndarray:
    """`(F, H, W)` bool of `(F, H, W, 3)` frames: pixels that differ from their frame's top-left pixel (the
    world's border is always background, so: on the object)."""
    return (frames != frames[:, :1, :1]).any(axis=-1)


def object_crop_origin(
    snippet: np.ndarray, crop: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left `(y, x)`, multiples of 8, of a `crop` (height, width) of `snippet` `(F, H, W, 3)` centred on
    its object: the mean place of its `object_pixels`, moved by up to CROP_JITTER px; the frame's centre
    when there is none."""
    h, w = crop
    height, width = snippet.shape[1:3]
    ys, xs = np.nonzero(object_pixels(snippet).any(axis=0))
    cy, cx = (ys.mean(), xs.mean()) if len(ys) else (height / 2, width / 2)
    jitter = rng.integers(-CROP_JITTER, CROP_JITTER + 1, size=2)
    y = np.clip(round((cy - h / 2 + jitter[0]) / 8), 0, (height - h) // 8)
    x = np.clip(round((cx - w / 2 + jitter[1]) / 8), 0, (width - w) // 8)
    return int(y) * 8, int(x) * 8


def draw_snippets(clips: Sequence[np.ndarray], settings: VAETraining, rng: np.random.Generator) -> np.ndarray:
    """`(batch, frames, h, w, 3)` uint8: random time windows (and crops at multiples of 8, at random places
    or on the object) of random clips."""
    snippets = []
    for _ in range(settings.batch):
        clip = clips[int(rng.integers(len(clips)))]
        start = int(rng.integers(0, len(clip) - settings.frames + 1))
        snippet = clip[start : start + settings.frames]
        if settings.crop is not None:
            h, w = settings.crop
            if settings.crop_object:
                y, x = object_crop_origin(snippet, settings.crop, rng)
            else:
                y = int(rng.integers(0, (clip.shape[1] - h) // 8 + 1)) * 8
                x = int(rng.integers(0, (clip.shape[2] - w) // 8 + 1)) * 8
            snippet = snippet[:, y : y + h, x : x + w]
        snippets.append(snippet)
    return np.stack(snippets)


def _forward(vae: CogVideoXVAE, x: torch.Tensor, generator: torch.Generator):
    """Encode `x` in one window, sample the posterior, decode in sampling's 2-latent windows."""
    mean, logvar = vae.encoder(x, {}).chunk(2, dim=1)
    noise = torch.randn(mean.shape, generator=generator)
    z = mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * noise
    cache: dict = {}
    out = [vae.decoder(z[:, :, a:b], cache) for a, b in latent_windows(z.shape[2], 2)]
    return torch.cat(out, dim=2), mean, logvar


def object_weights(x: torch.Tensor, weight: float) -> torch.Tensor:
    """`(B, 1, F, H, W)` per-pixel loss weights of `x` `(B, 3, F, H, W)`: `weight` where a pixel differs
    from its frame's top-left pixel (the world's border is always background, so: on the object), else 1."""
    on_object = (x != x[..., :1, :1]).any(dim=1, keepdim=True)
    return 1.0 + (weight - 1.0) * on_object.float()


def new_vae(config: VAEConfig = DEMO_VAE_CONFIG, seed: int = 0) -> CogVideoXVAE:
    """An encoder + decoder with PyTorch's default initialisation, drawn under `seed`, in train mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = CogVideoXVAE(config, latent_scale=1.0, parts=("encoder", "decoder"))
    return vae.train().requires_grad_(True)


def train_vae(
    vae: CogVideoXVAE,
    clips: Sequence[np.ndarray],
    settings: VAETraining,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Train `vae` in place on `clips` (`(F, H, W, 3)` uint8 each); returns the loss of every step."""
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(vae.parameters(), settings.lr, betas=(0.9, 0.99), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr, total_steps=settings.steps)
    losses, started = [], time.perf_counter()
    vae.train()
    for step in range(settings.steps):
        x = frames_to_tensor(draw_snippets(clips, settings, rng))
        out, mean, logvar = _forward(vae, x, generator)
        mse = (object_weights(x, settings.object_weight) * (out - x).pow(2)).mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        loss = mse + settings.kl_weight * kl
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == settings.steps - 1:
            log(
                f"vae step {step + 1}/{settings.steps}: mse {mse.item():.5f} kl {kl.item():.3f} "
                f"({time.perf_counter() - started:.0f} s)"
            )
    vae.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def posterior_means(vae: CogVideoXVAE, clip: np.ndarray) -> torch.Tensor:
    """`(1, C, T, h, w)` posterior means of a whole clip, encoded in `prepare`'s 48-frame windows."""
    moments = vae.encode(frames_to_tensor(clip[None]), window=PREPARE_WINDOW_FRAMES)
    return moments[:, : vae.config.latent_channels]


@torch.no_grad()
def reconstruct(vae: CogVideoXVAE, clip: np.ndarray) -> np.ndarray:
    """A clip `(F, H, W, 3)` uint8 through prepare's encode (posterior mean) and sampling's decode."""
    return tensor_to_frames(vae.decode(posterior_means(vae, clip), latent_scale=1.0))[0]


def psnr(reference: np.ndarray, frames: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 `frames` against `reference` (over all pixels)."""
    mse = np.mean((reference.astype(np.float64) - frames.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def reconstruction_psnr(vae: CogVideoXVAE, clips: Sequence[np.ndarray]) -> float:
    """PSNR (dB) over all frames of `clips` reconstructed as the pipeline would (`reconstruct`)."""
    errors = [
        np.mean((clip.astype(np.float64) - reconstruct(vae, clip).astype(np.float64)) ** 2) * clip.size
        for clip in clips
    ]
    mse = sum(errors) / sum(clip.size for clip in clips)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


@torch.no_grad()
def fold_latent_scale(vae: CogVideoXVAE, clips: Sequence[np.ndarray]) -> float:
    """Rescale the weights so that posterior means over `clips` have standard deviation 1; returns the
    factor `s` the latents were divided by. Exact: the encoder's mean rows of `conv_out` are divided by
    `s` and its log-variance biases lowered by `2 ln s`; every decoder convolution that reads the latents
    (`conv_in` and the SpatialNorms' `conv_y`/`conv_b`) has its weights multiplied by `s`."""
    means = torch.cat([posterior_means(vae, clip).flatten() for clip in clips])
    scale = float(means.std())
    channels = vae.config.latent_channels
    conv_out = vae.encoder.conv_out.conv
    conv_out.weight[:channels] /= scale
    conv_out.bias[:channels] /= scale
    conv_out.bias[channels:] -= 2 * math.log(scale)
    readers = [vae.decoder.conv_in.conv] + [
        module.conv for name, module in vae.decoder.named_modules() if name.endswith(("conv_y", "conv_b"))
    ]
    for conv in readers:
        conv.weight *= scale
    return scale


def save_vae(vae: CogVideoXVAE, out_dir: str | Path, height: int, width: int) -> Path:
    """Write a diffusers `AutoencoderKLCogVideoX` folder: config.json and the weights (diffusers names)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in sorted(vae.state_dict().items())}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    config = vae.config.to_diffusers_dict(sample_height=height, sample_width=width)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out
