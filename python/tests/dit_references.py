"""Independent references for the DiT tests: the parameter inventory of spec 4.1, and plain CogVideoX
(full attention, one prompt, 3-D RoPE) written from spec 4.2 - 4.4 and 13.1 with torch.nn.functional only."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ttt_video.models import DiTConfig

GLOBAL_SHAPES = {
    "time_embed.0.weight": (512, 3072),
    "time_embed.0.bias": (512,),
    "time_embed.2.weight": (512, 512),
    "time_embed.2.bias": (512,),
    "patch_embedding.vid_proj.weight": (3072, 16, 2, 2),
    "patch_embedding.vid_proj.bias": (3072,),
    "patch_embedding.text_proj.weight": (3072, 4096),
    "patch_embedding.text_proj.bias": (3072,),
    "transformer_norm.weight": (3072,),
    "transformer_norm.bias": (3072,),
    "final_layer.adaLN_modulation.1.weight": (6144, 512),
    "final_layer.adaLN_modulation.1.bias": (6144,),
    "final_layer.norm.weight": (3072,),
    "final_layer.norm.bias": (3072,),
    "final_layer.linear.weight": (64, 3072),
    "final_layer.linear.bias": (64,),
}

LAYER_SHAPES = {
    "pre_seq_layernorm.weight": (3072,),
    "pre_seq_layernorm.bias": (3072,),
    "pre_seq_adaLN_modulation.1.weight": (18432, 512),
    "pre_seq_adaLN_modulation.1.bias": (18432,),
    "pre_mlp_layernorm.weight": (3072,),
    "pre_mlp_layernorm.bias": (3072,),
    "pre_mlp_adaLN_modulation.1.weight": (18432, 512),
    "pre_mlp_adaLN_modulation.1.bias": (18432,),
    "mlp.layer1.weight": (12288, 3072),
    "mlp.layer1.bias": (12288,),
    "mlp.layer2.weight": (3072, 12288),
    "mlp.layer2.bias": (3072,),
    **{f"seq_modeling_block.{n}.weight": (3072, 3072) for n in "qkvo"},
    **{f"seq_modeling_block.{n}.bias": (3072,) for n in "qkvo"},
    **{f"seq_modeling_block.{n}.{p}": (64,) for n in ("q_norm", "k_norm") for p in ("weight", "bias")},
}


def ttt_layer_shapes(ssm: str) -> dict[str, tuple[int, ...]]:
    """Spec 4.1's TTT and gate parameters of one layer (none for ssm "none")."""
    if ssm == "none":
        return {}
    ttt = "seq_modeling_block.ssm.ttt."
    layer = {f"{ttt}{n}.weight": (3072, 3072) for n in ("wq", "wk", "wv", "wo")}
    layer.update({f"{ttt}{n}.bias": (3072,) for n in ("wq", "wk", "wv", "wo")})
    layer.update({f"{ttt}post_norm.weight": (3072,), f"{ttt}post_norm.bias": (3072,)})
    layer.update({f"{ttt}learnable_ttt_lr_weight": (48, 1, 3072), f"{ttt}learnable_ttt_lr_bias": (48, 1)})
    layer.update({f"{ttt}ttt_norm_weight": (48, 64), f"{ttt}ttt_norm_bias": (48, 64)})
    if ssm == "ttt_linear":
        layer.update({f"{ttt}W1": (48, 64, 64), f"{ttt}b1": (48, 1, 64)})
    else:
        layer.update({f"{ttt}W1": (48, 64, 256), f"{ttt}b1": (48, 1, 256)})
        layer.update({f"{ttt}W2": (48, 256, 64), f"{ttt}b2": (48, 1, 64)})
    for direction in ("forward", "backward"):
        for part in ("video", "text"):
            layer[f"seq_modeling_block.{direction}_ssm_gating_{part}.gating_alpha"] = (3072,)
    return layer


def spec_inventory(ssm: str) -> dict[str, tuple[int, ...]]:
    """Spec 4.1 for layer 0 and the global parameters."""
    layer = {**LAYER_SHAPES, **ttt_layer_shapes(ssm)}
    return {**GLOBAL_SHAPES, **{f"layers.0.{k}": v for k, v in layer.items()}}


class _Weights:
    """Named linear maps and LayerNorms over a state dict."""

    def __init__(self, sd: dict[str, torch.Tensor], eps: float):
        self.sd, self.eps = sd, eps

    def lin(self, x, name):
        return F.linear(x, self.sd[f"{name}.weight"], self.sd[f"{name}.bias"])

    def ln(self, x, name, size=None):
        size = size or x.shape[-1]
        return F.layer_norm(x, (size,), self.sd[f"{name}.weight"], self.sd[f"{name}.bias"], self.eps)


def _rope_rotation(d: int, T: int, h: int, w: int) -> torch.Tensor:
    """Unit complex numbers of every video token: pairs 0..d/8-1 time, 3d/16 height, 3d/16 width."""
    nt, nh = d // 8, 3 * d // 16
    rows = []
    for ti in range(T):
        for hi in range(h):
            for wi in range(w):
                row = [ti * 10000 ** (-m / nt) for m in range(nt)]
                row += [hi * 10000 ** (-m / nh) for m in range(nh)]
                row += [wi * 10000 ** (-m / nh) for m in range(nh)]
                rows.append(row)
    angles = torch.tensor(rows, dtype=torch.float64)
    return torch.polar(torch.ones_like(angles), angles)


def _attention(W, x, p, B, H, d, L, rot):
    def rope(t):  # (B, N, H, d)
        z = torch.view_as_complex(t.reshape(*t.shape[:-1], d // 2, 2).contiguous())
        return torch.view_as_real(z * rot[:, None]).reshape(t.shape)

    q = W.ln(W.lin(x, p + "seq_modeling_block.q").view(B, -1, H, d), p + "seq_modeling_block.q_norm", d)
    k = W.ln(W.lin(x, p + "seq_modeling_block.k").view(B, -1, H, d), p + "seq_modeling_block.k_norm", d)
    v = W.lin(x, p + "seq_modeling_block.v").view(B, -1, H, d)
    q = torch.cat([q[:, :L], rope(q[:, L:])], 1)
    k = torch.cat([k[:, :L], rope(k[:, L:])], 1)
    att = torch.einsum("bqhd,bkhd->bhqk", q, k).mul(d**-0.5).softmax(-1)
    return W.lin(torch.einsum("bhqk,bkhd->bqhd", att, v).reshape(B, -1, H * d), p + "seq_modeling_block.o")


def _sublayer(W, temb, txt, video, name, norm, block):
    mods = W.lin(F.silu(temb), name).chunk(6, 1)
    x_v = W.ln(video, norm) * (1 + mods[1][:, None]) + mods[0][:, None]
    x_t = W.ln(txt, norm) * (1 + mods[4][:, None]) + mods[3][:, None]
    out = block(torch.cat([x_t, x_v], 1))
    L = txt.shape[1]
    return txt + mods[5][:, None] * out[:, :L], video + mods[2][:, None] * out[:, L:]


def _embed(W, cfg, latents, text, t):
    B, T, C, Hl, Wl = latents.shape
    half = cfg.model_dim // 2
    k = torch.arange(half, dtype=torch.float32)
    args = t.float()[:, None] * torch.exp(-math.log(10000.0) * k / half)[None]
    e0 = torch.cat([args.cos(), args.sin()], -1).double()
    temb = W.lin(F.silu(W.lin(e0, "time_embed.0")), "time_embed.2")
    proj = W.sd["patch_embedding.vid_proj.weight"], W.sd["patch_embedding.vid_proj.bias"]
    video = F.conv2d(latents.reshape(B * T, C, Hl, Wl), *proj, stride=2)
    video = video.permute(0, 2, 3, 1).reshape(B, -1, cfg.model_dim)
    return temb, video, W.lin(text[:, 0], "patch_embedding.text_proj")


def cogvideox_reference(sd: dict[str, torch.Tensor], cfg: DiTConfig, latents, text, t) -> torch.Tensor:
    """Full-attention CogVideoX blocks with 3-D RoPE (B, T, C, H, W) -> v, written from the spec."""
    W = _Weights(sd, cfg.layer_norm_eps)
    B, T, C, Hl, Wl = latents.shape
    D, H = cfg.model_dim, cfg.num_heads
    rot = _rope_rotation(D // H, T, Hl // 2, Wl // 2)
    temb, video, txt = _embed(W, cfg, latents, text, t)
    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        L = txt.shape[1]
        attend = lambda x, p=p, L=L: _attention(W, x, p, B, H, D // H, L, rot)  # noqa: E731
        txt, video = _sublayer(
            W, temb, txt, video, p + "pre_seq_adaLN_modulation.1", p + "pre_seq_layernorm", attend
        )
        mlp = lambda x, p=p: W.lin(F.gelu(W.lin(x, p + "mlp.layer1"), approximate="tanh"), p + "mlp.layer2")  # noqa: E731
        txt, video = _sublayer(
            W, temb, txt, video, p + "pre_mlp_adaLN_modulation.1", p + "pre_mlp_layernorm", mlp
        )
    shift, scale = W.lin(F.silu(temb), "final_layer.adaLN_modulation.1").chunk(2, 1)
    out = W.ln(W.ln(video, "transformer_norm"), "final_layer.norm") * (1 + scale[:, None]) + shift[:, None]
    out = W.lin(out, "final_layer.linear").view(B, T, Hl // 2, Wl // 2, -1)
    result = torch.zeros(B, T, C, Hl, Wl, dtype=out.dtype)
    for c in range(C):
        for pi in range(2):
            for qi in range(2):
                result[:, :, c, pi::2, qi::2] = out[..., c * 4 + pi * 2 + qi]
    return result
