"""The TTT-Video diffusion transformer: CogVideoX-5B with segment-local attention and bidirectional TTT.

Parameter names follow spec 4.1 without the ``dit.`` prefix.
"""

from __future__ import annotations

import functools
import math
import os
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionPlan, LocalAttention, build_attention_plan
from .config import DiTConfig, SequenceLayout, layout_of_inputs
from .sincos import video_position_embedding
from .ttt import (
    TTTMLP,
    TanhGate,
    TTTBase,
    TTTLinear,
    TTTSequenceMixer,
    as_generator,
    fill_constant_,
    fill_uniform_,
    init_linear_,
    init_ttt_parameters,
)
from .ttt_order import TTTPassPlan, build_ttt_pass_plan


def timestep_embedding(timesteps: torch.Tensor, dim: int, round_to_bf16: bool) -> torch.Tensor:
    """``[cos(t f_k), sin(t f_k)]`` with ``f_k = 10000^(-k / (dim/2))``, fp32 (spec 4.2 step 1).

    ``round_to_bf16`` reproduces the reference's FSDP input cast: float timesteps pass through bf16
    (999 -> 1000); integer timesteps (training) are not rounded.
    """
    if round_to_bf16 and timesteps.is_floating_point():
        timesteps = timesteps.to(torch.bfloat16)
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


@dataclass(frozen=True)
class SequencePlan:
    """Everything that depends only on the input shape, built once per layout and device."""

    layout: SequenceLayout
    attention: AttentionPlan
    ttt_forward: TTTPassPlan | None
    ttt_reverse: TTTPassPlan | None


class PatchEmbedding(nn.Module):
    """Per-frame 2x2 patches of the latents and a linear projection of the text embeddings; with
    `config.sincos_pos_embedding`, fixed sin-cos position embeddings added to the video tokens."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        size, dim = config.patch_size, config.model_dim
        self.vid_proj = nn.Conv2d(config.in_channels, dim, kernel_size=size, stride=size)
        self.text_proj = nn.Linear(config.text_dim, dim)
        self.sincos = config.sincos_pos_embedding
        self.segment = (config.frames_per_segment, config.prefix_frames)

    def forward(self, latents: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``latents (B, T, C, H, W)``, ``text (B, n, L, D_text)`` -> ``(B, T*h*w, D)``, ``(B, n*L, D)``."""
        batch, frames = latents.shape[:2]
        video = self.vid_proj(latents.flatten(0, 1))  # (B*T, D, h, w)
        (dim, h, w) = video.shape[1:]
        video = video.flatten(2).transpose(1, 2).reshape(batch, -1, dim)
        if self.sincos:
            video = video + video_position_embedding(frames, h, w, dim, *self.segment).to(video)
        return video, self.text_proj(text).flatten(1, 2)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(dim, hidden)
        self.layer2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.gelu(self.layer1(x), approximate="tanh"))


class SequenceModelingBlock(LocalAttention):
    """Local attention followed by the bidirectional, tanh-gated TTT branch (spec 4.5, 4.6)."""

    def __init__(self, config: DiTConfig, compile: bool = False) -> None:
        super().__init__(config.model_dim, config.num_heads, config.layer_norm_eps)
        self.has_ttt = config.has_ttt
        if not self.has_ttt:
            return
        dim = config.model_dim
        common = dict(
            mini_batch_size=config.mini_batch_size,
            base_lr=config.ttt_base_lr,
            inner_ln_eps=config.ttt_inner_ln_eps,
            target_eps=config.ttt_target_eps,
            layer_norm_eps=config.layer_norm_eps,
            compile=compile,
            kernel=config.ttt_kernel,
        )
        if config.ssm_layer == "ttt_linear":
            ttt: TTTBase = TTTLinear(dim, config.num_heads, **common)
        else:
            ttt = TTTMLP(dim, config.num_heads, hidden_ratio=config.ttt_mlp_ratio, **common)
        self.ssm = TTTSequenceMixer(ttt)
        self.forward_ssm_gating_video = TanhGate(dim)
        self.forward_ssm_gating_text = TanhGate(dim)
        self.backward_ssm_gating_video = TanhGate(dim)
        self.backward_ssm_gating_text = TanhGate(dim)

    def forward(self, x: torch.Tensor, plan: SequencePlan) -> torch.Tensor:
        out = self.attend(x, plan.layout, plan.attention)
        if not self.has_ttt:
            return out
        num_text = plan.layout.num_text_tokens
        forward = self.ssm(out, plan.ttt_forward)
        out = out + torch.cat(
            [
                self.forward_ssm_gating_text(forward[:, :num_text]),
                self.forward_ssm_gating_video(forward[:, num_text:]),
            ],
            dim=1,
        )
        backward = self.ssm(out, plan.ttt_reverse)
        return out + torch.cat(
            [
                self.backward_ssm_gating_text(backward[:, :num_text]),
                self.backward_ssm_gating_video(backward[:, num_text:]),
            ],
            dim=1,
        )


class TransformerLayer(nn.Module):
    """adaLN-zero block (spec 4.3); text and video share the LayerNorms but not the modulation."""

    def __init__(self, config: DiTConfig, compile: bool = False) -> None:
        super().__init__()
        dim, eps = config.model_dim, config.layer_norm_eps
        self.pre_seq_layernorm = nn.LayerNorm(dim, eps=eps)
        self.pre_seq_adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(config.time_embed_dim, 6 * dim))
        self.seq_modeling_block = SequenceModelingBlock(config, compile=compile)
        self.pre_mlp_layernorm = nn.LayerNorm(dim, eps=eps)
        self.pre_mlp_adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(config.time_embed_dim, 6 * dim))
        self.mlp = FeedForward(dim, config.mlp_ratio * dim)
        # A compiled bound method, not a module, so that no second copy of the weights is registered.
        self._mlp_forward = torch.compile(self.mlp.forward, dynamic=False) if compile else self.mlp.forward

    def forward(self, x: torch.Tensor, temb: torch.Tensor, plan: SequencePlan) -> torch.Tensor:
        """``x (B, N, D)`` = ``[text | video]``, ``temb (B, E)``."""
        num_text = plan.layout.num_text_tokens
        text, video = x[:, :num_text], x[:, num_text:]
        block = functools.partial(self.seq_modeling_block, plan=plan)
        text, video = _adaln_sublayer(
            self.pre_seq_layernorm, self.pre_seq_adaLN_modulation, block, text, video, temb
        )
        mlp = self._mlp_forward
        text, video = _adaln_sublayer(
            self.pre_mlp_layernorm, self.pre_mlp_adaLN_modulation, mlp, text, video, temb
        )
        return torch.cat([text, video], dim=1)


def _adaln_sublayer(norm, modulation, block, text, video, temb):
    """One adaLN-zero sublayer: modulate the shared LayerNorm of text and video by their own
    (shift, scale), run ``block`` on ``[text | video]``, gate the result into each residual (spec 4.3)."""
    shift, scale, gate, text_shift, text_scale, text_gate = modulation(temb).chunk(6, dim=1)
    num_text = text.shape[1]
    h = block(
        torch.cat([modulate(norm(text), text_shift, text_scale), modulate(norm(video), shift, scale)], dim=1)
    )
    return text + text_gate.unsqueeze(1) * h[:, :num_text], video + gate.unsqueeze(1) * h[:, num_text:]


class FinalLayer(nn.Module):
    def __init__(self, dim: int, time_embed_dim: int, out_features: int, eps: float) -> None:
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(time_embed_dim, 2 * dim))
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.linear = nn.Linear(dim, out_features)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(temb).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


def unpatchify(tokens: torch.Tensor, layout: SequenceLayout, patch_size: int, channels: int) -> torch.Tensor:
    """``(B, T*h*w, C*p*p)`` with channel index ``c*p*p + i*p + j`` -> ``(B, T, C, h*p, w*p)`` (spec 4.2 step 6)."""
    batch = tokens.shape[0]
    p, h, w = patch_size, layout.grid_height, layout.grid_width
    x = tokens.reshape(batch, layout.num_frames, h, w, channels, p, p)
    return x.permute(0, 1, 4, 2, 5, 3, 6).reshape(batch, layout.num_frames, channels, h * p, w * p)


class TTTVideoDiT(nn.Module):
    """``model(latents (B,T,C,H,W), text (B,n,L,D_text), timesteps (B,)) -> v (B,T,C,H,W)``; T = 12n + 1."""

    def __init__(self, config: DiTConfig, *, seed: int = 0, compile: bool = False) -> None:
        super().__init__()
        self.config = config
        dim = config.model_dim
        self.time_embed = nn.Sequential(
            nn.Linear(dim, config.time_embed_dim),
            nn.SiLU(),
            nn.Linear(config.time_embed_dim, config.time_embed_dim),
        )
        self.patch_embedding = PatchEmbedding(config)
        self.layers = nn.ModuleList(
            TransformerLayer(config, compile=compile) for _ in range(config.num_layers)
        )
        self.transformer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.final_layer = FinalLayer(
            dim, config.time_embed_dim, config.patch_size**2 * config.out_channels, config.layer_norm_eps
        )
        self._plans: OrderedDict[tuple, SequencePlan] = OrderedDict()
        self.reset_parameters(seed)

    # ---------------------------------------------------------------------------------------------
    # construction, initialisation, checkpoints
    # ---------------------------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: DiTConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        seed: int = 0,
        compile: bool = False,
    ) -> TTTVideoDiT:
        """Random weights (seeded, drawn on the CPU); ``device='meta'`` allocates nothing."""
        with torch.device("meta"):
            model = cls(config, seed=seed, compile=compile)
        if dtype is not None:
            model = model.to(dtype)
        if torch.device(device or "cpu").type == "meta":
            return model
        model = model.to_empty(device=device or "cpu")
        model.reset_parameters(seed)
        return model

    def reset_parameters(self, seed: int | torch.Generator = 0) -> None:
        """nn.Linear/Conv2d default init, LayerNorms (1, 0), TTT and gates as spec 5.5. No-op on meta."""
        generator = as_generator(seed)
        for module in self.modules():
            if isinstance(module, TTTBase):
                continue  # init_ttt_parameters below
            if isinstance(module, nn.Linear):
                init_linear_(module, generator)
            elif isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * math.prod(module.kernel_size)
                fill_uniform_(module.weight, 1.0 / math.sqrt(fan_in), generator)
                fill_uniform_(module.bias, 1.0 / math.sqrt(fan_in), generator)
            elif isinstance(module, nn.LayerNorm):
                fill_constant_(module.weight, 1.0)
                fill_constant_(module.bias, 0.0)
        init_ttt_parameters(self, generator, gating_alpha=self.config.gating_alpha_init)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        compile: bool = False,
        config: DiTConfig | None = None,
    ) -> TTTVideoDiT:
        """Load ``config.json`` + ``model.safetensors`` (or shards with an index); strict key check.

        ``path`` is the transformer folder or a bundle that holds ``transformer/``. ``dtype=None`` keeps the
        stored dtype (float32 if the tensors mix dtypes). ``config`` replaces the stored configuration (other
        faithfulness switches, TTT mini-batch size or learning rate); the weights must still fit it.
        Problems with the files raise ``ttt_video.weights.WeightsError`` naming the file.
        """
        from ..weights.dit_files import load_dit_state, read_dit_config, transformer_folder

        folder = transformer_folder(path)
        config = config or read_dit_config(folder)
        with torch.device("meta"):
            model = cls(config, compile=compile)
        load_dit_state(model, folder, device, dtype)
        return model

    def save_pretrained(self, path: str | os.PathLike, max_shard_bytes: int = 5 * 2**30) -> list[str]:
        """Write ``config.json`` and the weights as safetensors, sharded above ``max_shard_bytes``."""
        from ..weights.dit_files import save_dit

        return save_dit(self, self.config, path, max_shard_bytes)

    # ---------------------------------------------------------------------------------------------
    # forward
    # ---------------------------------------------------------------------------------------------

    def layout_for(
        self, latents: torch.Tensor, text: torch.Tensor, timesteps: torch.Tensor
    ) -> SequenceLayout:
        """Validate the input shapes and derive the token layout (``layout_of_inputs``)."""
        return layout_of_inputs(self.config, latents.shape, text.shape, timesteps.shape)

    def sequence_plan(self, layout: SequenceLayout, device: torch.device, dtype: torch.dtype) -> SequencePlan:
        """Index tensors and RoPE tables for ``layout``, cached per layout, device and dtype."""
        key = (layout, str(device), dtype)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        # Plans built under inference_mode must stay usable by a later forward that records gradients.
        with torch.inference_mode(False):
            plan = self._build_sequence_plan(layout, device, dtype)
        self._plans[key] = plan
        while len(self._plans) > 4:
            self._plans.popitem(last=False)
        return plan

    def _build_sequence_plan(
        self, layout: SequenceLayout, device: torch.device, dtype: torch.dtype
    ) -> SequencePlan:
        cfg = self.config
        attention = build_attention_plan(layout, cfg.head_dim, cfg.rope_theta, cfg.rope_bf16, device, dtype)
        passes: list[TTTPassPlan | None] = [None, None]
        if cfg.has_ttt:
            passes = [
                build_ttt_pass_plan(
                    layout,
                    reverse=reverse,
                    head_dim=cfg.head_dim,
                    theta=cfg.ttt_rope_theta,
                    mini_batch_size=cfg.mini_batch_size,
                    lr_alignment=cfg.ttt_lr_alignment,
                    reverse_pairing=cfg.reverse_pairing,
                    device=device,
                    rope_dtype=torch.promote_types(dtype, torch.float32),
                )
                for reverse in (False, True)
            ]
        return SequencePlan(layout, attention, passes[0], passes[1])

    def forward(self, latents: torch.Tensor, text: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        layout = self.layout_for(latents, text, timesteps)
        weight = self.patch_embedding.vid_proj.weight
        dtype, device = weight.dtype, weight.device
        plan = self.sequence_plan(layout, device, dtype)

        embedding = timestep_embedding(timesteps.to(device), self.config.model_dim, self.config.timestep_bf16)
        temb = self.time_embed(embedding.to(dtype))
        video, text_tokens = self.patch_embedding(latents.to(device, dtype), text.to(device, dtype))
        x = torch.cat([text_tokens, video], dim=1)
        for layer in self.layers:
            x = layer(x, temb, plan)
        video = self.transformer_norm(x[:, layout.num_text_tokens :])
        out = self.final_layer(video, temb)
        return unpatchify(out, layout, self.config.patch_size, self.config.out_channels)
