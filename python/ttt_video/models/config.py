"""DiT configuration and the per-call token layout derived from input shapes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..kernels.select import TTT_KERNELS

SSM_LAYERS = ("ttt_mlp", "ttt_linear", "none")
TTT_LR_ALIGNMENTS = ("reference", "aligned")
REVERSE_PAIRINGS = ("reference", "aligned")


@dataclass
class DiTConfig:
    """Architecture of the TTT-Video DiT (spec 1.3) plus the faithfulness switches.

    Every switch defaults to the reference behaviour; see docs/model.md.
    """

    model_dim: int
    num_heads: int
    num_layers: int
    text_dim: int
    time_embed_dim: int
    patch_size: int = 2
    in_channels: int = 16
    out_channels: int = 16
    layer_norm_eps: float = 1e-6
    mlp_ratio: int = 4
    ssm_layer: str = "ttt_mlp"
    ttt_base_lr: float = 0.1
    mini_batch_size: int = 64
    ttt_mlp_ratio: int = 4  # TTT-MLP hidden width = ttt_mlp_ratio * head_dim
    ttt_inner_ln_eps: float = 1e-6
    ttt_target_eps: float = 1e-8
    frames_per_segment: int = 12
    prefix_frames: int = 1
    rope_theta: float = 10000.0
    ttt_rope_theta: float = 10000.0
    gating_alpha_init: float = 0.1
    # Project switch, off in the 5B model and the reference: CogVideoX-2B-style fixed 3-D sin-cos position
    # embeddings added to the video tokens (models/sincos.py), for tiny models trained briefly.
    sincos_pos_embedding: bool = False
    # Faithfulness switches (spec 14.2): "reference" / True reproduce the research system.
    ttt_lr_alignment: str = "reference"  # spec 5.2 learning-rate misalignment | "aligned"
    reverse_pairing: str = "reference"  # spec 5.7 off-by-one reverse pairing | "aligned"
    timestep_bf16: bool = True  # spec 4.2: round float timesteps to bf16 before the embedding
    rope_bf16: bool = True  # spec 4.4: attention RoPE tables and rotation in bf16
    # Which TTT scan runs: "auto" (Triton on CUDA when it imports, else eager), "triton" or "eager".
    ttt_kernel: str = "auto"

    def __post_init__(self) -> None:
        for name in ("model_dim", "num_heads", "num_layers", "text_dim", "time_embed_dim", "patch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DiTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.model_dim % self.num_heads != 0:
            raise ValueError(
                f"DiTConfig: num_heads={self.num_heads} does not divide model_dim={self.model_dim}"
            )
        if self.head_dim % 16 != 0:
            raise ValueError(
                f"DiTConfig: head_dim={self.head_dim} must be a multiple of 16 "
                "(the 3-D RoPE splits it d/4 temporal + 3d/8 height + 3d/8 width, in pairs)"
            )
        if self.ssm_layer not in SSM_LAYERS:
            raise ValueError(f"DiTConfig.ssm_layer must be one of {SSM_LAYERS}, got {self.ssm_layer!r}")
        if self.ttt_lr_alignment not in TTT_LR_ALIGNMENTS:
            raise ValueError(
                f"DiTConfig.ttt_lr_alignment must be one of {TTT_LR_ALIGNMENTS}, got {self.ttt_lr_alignment!r}"
            )
        if self.reverse_pairing not in REVERSE_PAIRINGS:
            raise ValueError(
                f"DiTConfig.reverse_pairing must be one of {REVERSE_PAIRINGS}, got {self.reverse_pairing!r}"
            )
        if self.ttt_kernel not in TTT_KERNELS:
            raise ValueError(
                f"DiTConfig.ttt_kernel must be one of {TTT_KERNELS}, got {self.ttt_kernel!r} "
                "('triton' needs the optional extra: pip install 'ttt-video[triton]')"
            )
        if self.mini_batch_size <= 0:
            raise ValueError(f"DiTConfig.mini_batch_size must be positive, got {self.mini_batch_size}")
        if self.frames_per_segment <= 0 or self.prefix_frames < 0:
            raise ValueError("DiTConfig: frames_per_segment must be > 0 and prefix_frames >= 0")

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def has_ttt(self) -> bool:
        return self.ssm_layer != "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ValueError(f"unknown DiTConfig key {key!r}; known keys: {sorted(known)}")
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(values))
        if missing:
            raise ValueError(f"DiTConfig is missing required keys {missing}")
        return cls(**values)


@dataclass(frozen=True)
class SequenceLayout:
    """Token layout of one forward call: ``[text_0 .. text_{n-1} | video frames 0 .. T-1]``.

    Video tokens are ordered (t, h, w) row-major over the patch grid.
    """

    num_segments: int
    text_length: int
    num_frames: int
    grid_height: int
    grid_width: int
    frames_per_segment: int = 12
    prefix_frames: int = 1

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_height * self.grid_width

    @property
    def num_text_tokens(self) -> int:
        return self.num_segments * self.text_length

    @property
    def num_video_tokens(self) -> int:
        return self.num_frames * self.tokens_per_frame

    @property
    def num_tokens(self) -> int:
        return self.num_text_tokens + self.num_video_tokens

    @property
    def window_frames(self) -> int:
        """Latent frames seen by one attention window (12 + 1 prefix frame)."""
        return self.frames_per_segment + self.prefix_frames

    def window_start_frame(self, segment: int) -> int:
        return segment * self.frames_per_segment


def _check_input_shapes(cfg: DiTConfig, latents: tuple, text: tuple, timesteps: tuple) -> None:
    if len(latents) != 5:
        raise ValueError(f"latents must be (B, T, C, H, W), got shape {tuple(latents)}")
    if len(text) != 4:
        raise ValueError(f"text must be (B, n, L, D_text), got shape {tuple(text)}")
    batch, _, channels, height, width = latents
    if channels != cfg.in_channels:
        raise ValueError(
            f"latents have {channels} channels but the model expects in_channels={cfg.in_channels}"
        )
    if height % cfg.patch_size or width % cfg.patch_size:
        raise ValueError(f"latent size {height}x{width} is not divisible by patch_size={cfg.patch_size}")
    if text[0] != batch or tuple(timesteps) != (batch,):
        raise ValueError(f"batch sizes differ: latents {batch}, text {text[0]}, timesteps {tuple(timesteps)}")
    if text[-1] != cfg.text_dim:
        raise ValueError(
            f"text embeddings have width {text[-1]} but the model expects text_dim={cfg.text_dim}"
        )


def layout_of_inputs(cfg: DiTConfig, latents: tuple, text: tuple, timesteps: tuple) -> SequenceLayout:
    """The token layout of a forward call, from the shapes of its inputs, which are validated:
    latents ``(B, T, C, H, W)``, text ``(B, n, L, D_text)``, timesteps ``(B,)``, T = 12n + 1."""
    _check_input_shapes(cfg, latents, text, timesteps)
    segments, text_length, frames = text[1], text[2], latents[1]
    expected = cfg.frames_per_segment * segments + cfg.prefix_frames
    if segments < 1 or text_length < 1 or frames != expected:
        raise ValueError(
            f"text has n={segments} segments of L={text_length} tokens and latents have T={frames} frames; "
            f"T must equal {cfg.frames_per_segment}n+{cfg.prefix_frames} = {expected} (and n, L >= 1)"
        )
    layout = SequenceLayout(
        num_segments=segments,
        text_length=text_length,
        num_frames=frames,
        grid_height=latents[3] // cfg.patch_size,
        grid_width=latents[4] // cfg.patch_size,
        frames_per_segment=cfg.frames_per_segment,
        prefix_frames=cfg.prefix_frames,
    )
    if cfg.has_ttt and layout.num_tokens % cfg.mini_batch_size:
        raise ValueError(
            f"TTT sequence length n*L + T*tokens_per_frame = {segments}*{text_length} + "
            f"{frames}*{layout.tokens_per_frame} = {layout.num_tokens} is not a multiple of "
            f"mini_batch_size={cfg.mini_batch_size}; choose the text length L accordingly"
        )
    return layout
