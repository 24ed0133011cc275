"""The DiT: parameter inventory, equivalence with a full-attention CogVideoX stack, locality, gates,
dtypes, shape errors, checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from dit_references import cogvideox_reference, spec_inventory
from safetensors.torch import load_file, save_file

from ttt_video.models import (
    DiTConfig,
    TTTVideoDiT,
    build_config,
    init_ttt_parameters,
    timestep_embedding,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_inputs(n: int, text_length: int = 8, seed: int = 0, batch: int = 1):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 12 * n + 1, 16, 8, 12, generator=g)
    text = torch.randn(batch, n, text_length, 32, generator=g)
    return latents, text, torch.full((batch,), 500.0)


# ------------------------------------------------------------------------------------------------
# configuration and parameters
# ------------------------------------------------------------------------------------------------


def test_config_round_trip_and_errors():
    cfg = build_config("tiny", ssm_layer="ttt_linear", reverse_pairing="aligned")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert DiTConfig.from_dict(data) == cfg
    with pytest.raises(ValueError, match="'bogus'"):
        DiTConfig.from_dict({**data, "bogus": 1})
    with pytest.raises(ValueError, match="model_dim"):
        DiTConfig.from_dict({k: v for k, v in data.items() if k != "model_dim"})
    with pytest.raises(ValueError, match="num_heads=3 does not divide model_dim=64"):
        build_config("tiny", num_heads=3)
    with pytest.raises(ValueError, match="ssm_layer"):
        build_config("tiny", ssm_layer="mamba")
    with pytest.raises(ValueError, match="ttt_lr_alignment"):
        build_config("tiny", ttt_lr_alignment="fixed")
    with pytest.raises(ValueError, match="unknown model preset"):
        build_config("13B")
    assert build_config("5B").head_dim == 64 and build_config("debug").head_dim == 64


@pytest.mark.parametrize("ssm", ["none", "ttt_linear", "ttt_mlp"])
def test_5b_parameter_inventory_on_meta(ssm):
    model = TTTVideoDiT.from_config(build_config("5B", ssm_layer=ssm), device="meta")
    params = dict(model.named_parameters())
    assert all(p.is_meta for p in params.values())
    assert len(model.state_dict()) == len(params)  # no persistent buffers
    expected = spec_inventory(ssm)
    layer0 = {
        k: tuple(v.shape)
        for k, v in params.items()
        if not k.startswith("layers.") or k.startswith("layers.0.")
    }
    assert layer0 == expected
    assert sum(k.startswith("layers.41.") for k in params) == sum(k.startswith("layers.0.") for k in params)
    assert not any(k.startswith("layers.42.") for k in params)

    total = sum(p.numel() for p in params.values())
    base = 5_570_283_072
    if ssm == "none":
        assert round(total / 1e9, 3) == 5.570
        assert total == base
    elif ssm == "ttt_linear":
        assert round((total - base) / 42 / 1e6, 2) == 38.13
        assert round((total - base) / 1e9, 2) == 1.60
    else:
        assert round((total - base) / 42 / 1e6, 2) == 39.52
        assert round((total - base) / 1e9, 2) == 1.66


def test_init_is_seeded_and_init_ttt_touches_only_ttt():
    cfg = build_config("tiny", ssm_layer="ttt_mlp")
    a, b = TTTVideoDiT(cfg, seed=1), TTTVideoDiT.from_config(cfg, seed=1)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    before = {k: v.clone() for k, v in a.state_dict().items()}
    init_ttt_parameters(a, seed=7)
    init_ttt_parameters(b, seed=7)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name])
        is_ttt = ".ssm." in name or "_ssm_gating_" in name
        changed = not torch.equal(value, before[name])
        constant = name.endswith(("gating_alpha", "norm_weight", "norm_bias", ".b1", ".b2", "lr_bias")) or (
            "post_norm" in name
        )
        assert changed == (is_ttt and not constant), name
    ttt = a.layers[0].seq_modeling_block.ssm.ttt
    assert torch.all(a.layers[0].seq_modeling_block.forward_ssm_gating_video.gating_alpha == 0.1)
    assert (
        torch.all(ttt.b1 == 0)
        and torch.all(ttt.ttt_norm_weight == 1)
        and torch.all(ttt.learnable_ttt_lr_bias == 0)
    )
    assert ttt.wq.weight.abs().max() <= 1 / math.sqrt(64) and ttt.wq.bias.abs().max() <= 1 / math.sqrt(64)
    assert 0.015 < ttt.W1.std().item() < 0.025


# ------------------------------------------------------------------------------------------------
# equivalence with plain CogVideoX (ssm none, one segment) written independently (dit_references.py)
# ------------------------------------------------------------------------------------------------


def test_single_segment_without_ttt_equals_cogvideox():
    cfg = build_config("tiny", ssm_layer="none", rope_bf16=False, timestep_bf16=False)
    model = TTTVideoDiT(cfg, seed=3).double()
    with torch.no_grad():  # non-trivial norms and modulation
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    latents, text, t = tiny_inputs(1, text_length=5, batch=2)
    t = torch.tensor([999.0, 17.0])
    latents, text = latents.double(), text.double()
    with torch.no_grad():
        got = model(latents, text, t)
        expected = cogvideox_reference(model.state_dict(), cfg, latents, text, t)
    assert got.shape == latents.shape
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_prompt_changes_only_its_window():
    cfg = build_config("tiny", ssm_layer="none", num_layers=1)
    model = TTTVideoDiT(cfg, seed=0)
    latents, text, t = tiny_inputs(3)
    changed_text = text.clone()
    changed_text[:, 1] += 1.0
    with torch.no_grad():
        a, b = model(latents, text, t), model(latents, changed_text, t)
    frame_changed = (a != b).flatten(2).any(-1)[0]
    assert frame_changed.tolist() == [12 <= f <= 24 for f in range(37)]

    # With TTT the prompt reaches every frame.
    ttt_model = TTTVideoDiT(build_config("tiny", ssm_layer="ttt_linear", num_layers=1), seed=0)
    with torch.no_grad():
        a, b = ttt_model(latents, text, t), ttt_model(latents, changed_text, t)
    assert (a != b).flatten(2).any(-1).all()


@pytest.mark.parametrize("ssm", ["ttt_linear", "ttt_mlp"])
def test_zero_gates_remove_the_ttt_branch(ssm):
    model = TTTVideoDiT(build_config("tiny", ssm_layer=ssm), seed=0)
    plain = TTTVideoDiT(build_config("tiny", ssm_layer="none"), seed=1)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k in plain.state_dict()})
    latents, text, t = tiny_inputs(3)
    with torch.no_grad():
        with_gates = model(latents, text, t)
        for name, p in model.named_parameters():
            if name.endswith("gating_alpha"):
                p.zero_()
        assert torch.equal(model(latents, text, t), plain(latents, text, t))
        assert not torch.equal(with_gates, plain(latents, text, t))


# ------------------------------------------------------------------------------------------------
# dtypes, lengths, switches
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ssm", ["ttt_linear", "ttt_mlp"])
def test_tiny_preset_3s_and_9s_fp32_and_bf16(ssm):
    model = TTTVideoDiT(build_config("tiny", ssm_layer=ssm), seed=0)
    outputs = {}
    for n in (1, 3):
        latents, text, t = tiny_inputs(n)
        with torch.inference_mode():
            out = model(latents, text, t)
        assert out.shape == latents.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
        outputs[n] = out
    latents, text, t = tiny_inputs(1)
    model_bf16 = model.to(torch.bfloat16)
    with torch.inference_mode():
        out = model_bf16(latents, text, t)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert F.cosine_similarity(out.float().flatten(), outputs[1].flatten(), dim=0) > 0.99


def test_backward_after_inference_mode_forward():
    model = TTTVideoDiT(build_config("tiny", ssm_layer="ttt_mlp", num_layers=1), seed=0)
    inputs = tiny_inputs(3)
    with torch.inference_mode():
        model(*inputs)  # builds and caches the sequence plan
    model(*inputs).square().mean().backward()
    block = model.layers[0].seq_modeling_block
    for p in (
        block.ssm.ttt.W1,
        block.ssm.ttt.learnable_ttt_lr_weight,
        block.backward_ssm_gating_video.gating_alpha,
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_switches_only_matter_for_multiple_segments():
    def run(n, **switches):
        model = TTTVideoDiT(
            build_config("tiny", ssm_layer="ttt_linear", ttt_base_lr=50.0, **switches), seed=0
        )
        with torch.no_grad():
            return model(*tiny_inputs(n))

    for switch in ({"ttt_lr_alignment": "aligned"}, {"reverse_pairing": "aligned"}):
        assert torch.equal(run(1), run(1, **switch))
        assert not torch.equal(run(3), run(3, **switch))


def test_timestep_bf16_rounding():
    t = torch.tensor([999.0, 259.0, 18.0])
    rounded = timestep_embedding(t, 64, round_to_bf16=True)
    assert torch.equal(
        rounded, timestep_embedding(torch.tensor([1000.0, 260.0, 18.0]), 64, round_to_bf16=False)
    )
    # Integer timesteps (training) are not rounded.
    assert torch.equal(
        timestep_embedding(torch.tensor([999]), 64, round_to_bf16=True),
        timestep_embedding(torch.tensor([999.0]), 64, round_to_bf16=False),
    )
    emb = timestep_embedding(torch.tensor([3.0]), 8, round_to_bf16=False)
    freqs = [10000 ** (-k / 4) for k in range(4)]
    assert torch.allclose(
        emb[0], torch.tensor([math.cos(3 * f) for f in freqs] + [math.sin(3 * f) for f in freqs])
    )


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


def test_shape_errors():
    model = TTTVideoDiT(build_config("tiny", ssm_layer="ttt_linear"), seed=0)
    latents, text, t = tiny_inputs(3)
    with pytest.raises(ValueError, match=r"n=3 segments.*T=25 frames.*37"):
        model(latents[:, :25], text, t)
    with pytest.raises(ValueError, match="text_dim=32"):
        model(latents, torch.randn(1, 3, 8, 48), t)
    with pytest.raises(ValueError, match="multiple of mini_batch_size=16"):
        model(latents, text[:, :, :7], t)
    with pytest.raises(ValueError, match="in_channels=16"):
        model(latents[:, :, :8], text, t)
    with pytest.raises(ValueError, match="divisible by patch_size"):
        model(latents[..., :11], text, t)
    with pytest.raises(ValueError, match="batch sizes differ"):
        model(latents, text, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\(B, n, L, D_text\)"):
        model(latents, text[0], t)
    # Without TTT any text length works.
    plain = TTTVideoDiT(build_config("tiny", ssm_layer="none"), seed=0)
    with torch.no_grad():
        assert plain(latents, text[:, :, :7], t).shape == latents.shape


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_shard_bytes", [2**40, 30_000])
def test_save_load_round_trip(tmp_path, max_shard_bytes):
    model = TTTVideoDiT(build_config("tiny", ssm_layer="ttt_mlp", reverse_pairing="aligned"), seed=5)
    model.save_pretrained(tmp_path, max_shard_bytes=max_shard_bytes)
    sharded = (tmp_path / "model.safetensors.index.json").exists()
    assert sharded == (max_shard_bytes < 2**40)
    assert sharded == (not (tmp_path / "model.safetensors").exists())
    loaded = TTTVideoDiT.from_pretrained(tmp_path)
    assert loaded.config == model.config
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    inputs = tiny_inputs(1)
    with torch.no_grad():
        assert torch.equal(model(*inputs), loaded(*inputs))
    half = TTTVideoDiT.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    # A bundle folder with transformer/ inside also loads, keeping the stored dtype.
    half.save_pretrained(tmp_path / "bundle" / "transformer", max_shard_bytes=max_shard_bytes)
    again = TTTVideoDiT.from_pretrained(tmp_path / "bundle")
    assert all(p.dtype == torch.bfloat16 for p in again.parameters())
    assert all(torch.equal(a, b) for a, b in zip(half.parameters(), again.parameters(), strict=True))


def test_from_pretrained_strict_key_check(tmp_path):
    model = TTTVideoDiT(build_config("tiny", ssm_layer="ttt_linear"), seed=0)
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("layers.1.mlp.layer1.bias")
    state["layers.0.extra"] = torch.zeros(1)
    state["final_layer.linear.weight"] = torch.zeros(3, 64)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError) as info:
        TTTVideoDiT.from_pretrained(tmp_path)
    message = str(info.value)
    assert "missing (1): layers.1.mlp.layer1.bias" in message
    assert "unexpected (1): layers.0.extra" in message
    assert "misshapen (1): final_layer.linear.weight: checkpoint (3, 64), model (64, 64)" in message

    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "ssm_kind": "x"}))
    with pytest.raises(ValueError, match="unknown DiTConfig key 'ssm_kind'"):
        TTTVideoDiT.from_pretrained(tmp_path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch when dynamo is imported
def test_compile_flag_registers_no_extra_parameters():
    cfg = build_config("tiny", ssm_layer="ttt_mlp")
    assert TTTVideoDiT(cfg, compile=True).state_dict().keys() == TTTVideoDiT(cfg).state_dict().keys()
