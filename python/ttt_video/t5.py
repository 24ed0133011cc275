"""The T5 v1.1 encoder (CogVideoX's text encoder) in plain PyTorch, read from a transformers folder.

It computes what the reference's ``T5EncoderModel`` computed (transformers 4.47, spec 3), without importing
transformers (2.5 s of the CPU demo's start-up, for what is a small module): token embedding; per block a
pre-norm self-attention (no 1/sqrt(d) scaling, the bucketed relative position bias of the first block added
in every block, softmax in fp32) and a pre-norm gated-GELU (tanh) feed-forward, each added to the residual;
a final norm. The norm is T5's RMS norm (variance in fp32, no mean, no bias). No attention mask: padding is
attended, as in CogVideoX. Module and parameter names are transformers' (``encoder.block.0.layer.0...``),
so a checkpoint loads with a strict key check; weights come from safetensors only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .weights.errors import WeightsError


@dataclass(frozen=True)
class T5Config:
    """The fields of a transformers T5 ``config.json`` that the encoder uses."""

    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_heads: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6

    @classmethod
    def from_json(cls, values: dict, where: str) -> T5Config:
        if values.get("feed_forward_proj", "relu") != "gated-gelu":
            raise WeightsError(
                f"{where}: feed_forward_proj is {values.get('feed_forward_proj')!r}; only T5 v1.1 encoders "
                "('gated-gelu', as CogVideoX's t5-v1_1-xxl) are supported"
            )
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in values]
        if missing:
            raise WeightsError(f"{where}: not a T5 config, it lacks {missing}")
        return cls(**{f.name: values[f.name] for f in fields if f.name in values})


class T5LayerNorm(nn.Module):
    """T5's RMS norm: ``weight * x / sqrt(mean(x^2) + eps)``, the mean in fp32, the result in the weight's
    dtype when that is 16-bit."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device) -> torch.Tensor:
    """``(length, length)`` bucket of ``key - query`` for bidirectional attention (T5's bucketing: half the
    buckets per sign, exact below ``num_buckets / 4``, logarithmic up to ``max_distance``)."""
    position = torch.arange(length, dtype=torch.long, device=device)
    relative = position[None, :] - position[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).to(torch.long) * half
    distance = relative.abs()
    max_exact = half // 2
    large = max_exact + (
        torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    ).to(torch.long)
    large = torch.minimum(large, torch.full_like(large, half - 1))
    return buckets + torch.where(distance < max_exact, distance, large)


def uninitialised_embedding(rows: int, dim: int) -> nn.Embedding:
    """An embedding whose weight is left as allocated (the weights are loaded next). nn.Embedding's own
    normal_ init on ``meta`` goes through torch's reference decompositions, whose first use costs seconds."""
    return nn.Embedding.from_pretrained(torch.empty(rows, dim), freeze=True)


class T5Attention(nn.Module):
    def __init__(self, config: T5Config, has_relative_attention_bias: bool) -> None:
        super().__init__()
        inner = config.num_heads * config.d_kv
        self.num_heads, self.head_dim = config.num_heads, config.d_kv
        self.q = nn.Linear(config.d_model, inner, bias=False)
        self.k = nn.Linear(config.d_model, inner, bias=False)
        self.v = nn.Linear(config.d_model, inner, bias=False)
        self.o = nn.Linear(inner, config.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = uninitialised_embedding(
                config.relative_attention_num_buckets, config.num_heads
            )

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        """``x (B, L, D)``, ``position_bias (1, H, L, L)`` -> ``(B, L, D)``."""
        batch, length = x.shape[:2]

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

        scores = heads(self.q(x)) @ heads(self.k(x)).transpose(-1, -2) + position_bias
        weights = F.softmax(scores.float(), dim=-1).type_as(scores)
        out = (weights @ heads(self.v(x))).transpose(1, 2).reshape(batch, length, -1)
        return self.o(out)


class T5LayerSelfAttention(nn.Module):
    def __init__(self, config: T5Config, has_relative_attention_bias: bool) -> None:
        super().__init__()
        self.SelfAttention = T5Attention(config, has_relative_attention_bias)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        return x + self.SelfAttention(self.layer_norm(x), position_bias)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation as T5's ``gelu_new`` writes it, op by op (in bf16 each op rounds, and
    ``F.gelu(approximate="tanh")``, which rounds once, gives other bits)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class T5DenseGatedActDense(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = gelu_new(self.wi_0(x)) * self.wi_1(x)
        return self.wo(hidden.to(self.wo.weight.dtype))


class T5LayerFF(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(config)
        self.layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
    def __init__(self, config: T5Config, first: bool) -> None:
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(config, first), T5LayerFF(config)])

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        return clamp_float16(self.layer[1](clamp_float16(self.layer[0](x, position_bias))))


def clamp_float16(x: torch.Tensor) -> torch.Tensor:
    """In float16, T5 clamps the residual stream below the largest value (less 1000 where it overflowed)."""
    if x.dtype != torch.float16:
        return x
    largest = torch.finfo(torch.float16).max
    limit = torch.where(torch.isinf(x).any(), largest - 1000, largest)
    return torch.clamp(x, min=-limit, max=limit)


class T5Stack(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.block = nn.ModuleList(T5Block(config, first=i == 0) for i in range(config.num_layers))
        self.final_layer_norm = T5LayerNorm(config.d_model, config.layer_norm_epsilon)


class T5Encoder(nn.Module):
    """``model(input_ids (B, L)) -> hidden states (B, L, d_model)``."""

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.config = config
        self.shared = uninitialised_embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config)

    def position_bias(self, length: int) -> torch.Tensor:
        """``(1, H, L, L)`` from the first block's bias table, shared by all blocks."""
        table = self.encoder.block[0].layer[0].SelfAttention.relative_attention_bias
        c = self.config
        buckets = relative_position_buckets(
            length, c.relative_attention_num_buckets, c.relative_attention_max_distance, table.weight.device
        )
        return table(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.shared(input_ids)
        bias = self.position_bias(input_ids.shape[1])
        for block in self.encoder.block:
            x = block(x, bias)
        return self.encoder.final_layer_norm(x)

    def shrink_vocabulary(self, rows: int) -> None:
        """Keep the first ``rows`` embedding rows (as ``resize_token_embeddings`` to fewer rows does)."""
        self.shared = nn.Embedding.from_pretrained(self.shared.weight[:rows].clone(), freeze=True)


TIED_EMBEDDING = "encoder.embed_tokens.weight"  # transformers' tied copy of shared.weight


def read_t5_state(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's ``*.safetensors`` files (one file or shards)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            state.update(load_file(str(file)))
        except (SafetensorError, OSError) as e:
            raise WeightsError(
                f"{file}: not a readable safetensors file ({e}); copy text_encoder/ again"
            ) from None
    return state


def load_t5_encoder(folder: str | Path, dtype: torch.dtype) -> T5Encoder:
    """The encoder of a transformers ``T5EncoderModel`` folder (``config.json`` + safetensors) in ``dtype``,
    every parameter included; keys must match exactly (the tied ``encoder.embed_tokens.weight`` may stand in
    for ``shared.weight``)."""
    folder = Path(folder)
    config = T5Config.from_json(json.loads((folder / "config.json").read_text()), str(folder / "config.json"))
    with torch.device("meta"):
        model = T5Encoder(config)
    state = read_t5_state(folder)
    if "shared.weight" not in state and TIED_EMBEDDING in state:
        state["shared.weight"] = state[TIED_EMBEDDING]
    state.pop(TIED_EMBEDDING, None)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise WeightsError(
            f"{folder}: the T5 weights do not fit its config.json (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}); copy text_encoder/ from the CogVideoX-5b snapshot again"
        )
    try:
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, assign=True)
    except RuntimeError as e:  # a tensor of another shape than config.json says
        raise WeightsError(f"{folder}: {str(e).splitlines()[-1].strip()}; copy text_encoder/ again") from None
    return model.eval().requires_grad_(False)
