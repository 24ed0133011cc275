"""Remat applied from outside (same names, same gradients, fewer saved activations), the gradient helpers
and the loss curve picture."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest
import torch

from ttt_video.models import TTTVideoDiT, build_config
from ttt_video.models.ttt import TTTBase
from ttt_video.training import remat as remat_module
from ttt_video.training.grads import global_grad_norm, tensor_parallel_partials
from ttt_video.training.loss_curve import loss_curve_svg, nice_ticks, smoothed
from ttt_video.training.remat import LayerGroups, apply_remat

FLAGS = ("forward_ssm", "reverse_ssm", "attention", "mlp", "seq_modeling_block")


def remat_cfg(group: int = 1, scan: int = 2, **flags) -> SimpleNamespace:
    values = dict.fromkeys(FLAGS, False) | flags
    return SimpleNamespace(
        transformer_checkpoint_layer_group_size=group,
        scan_checkpoint_group_size=scan,
        shard_transformer_inputs=False,
        **values,
    )


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 13, 16, 4, 4, generator=g)
    text = torch.randn(1, 1, 12, 32, generator=g)
    return latents, text, torch.tensor([321])


def gradients(model: TTTVideoDiT) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(*inputs()).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "cfg",
    [remat_cfg(1), remat_cfg(2, attention=True, mlp=True), remat_cfg(1, **dict.fromkeys(FLAGS, True))],
    ids=["layers", "group2-attention-mlp", "everything"],
)
def test_remat_keeps_names_and_gradients(cfg, single_thread):
    plain = TTTVideoDiT.from_config(build_config("tiny"), seed=1)
    checkpointed = TTTVideoDiT.from_config(build_config("tiny"), seed=1)
    warnings = apply_remat(checkpointed, cfg)
    assert warnings == []
    assert list(checkpointed.state_dict()) == list(plain.state_dict())
    assert isinstance(checkpointed.layers, LayerGroups) and len(checkpointed.layers) == 2
    assert all(m.scan_checkpoint_group_size == 2 for m in checkpointed.modules() if isinstance(m, TTTBase))
    want, got = gradients(plain), gradients(checkpointed)
    for name in want:  # recomputation repeats the same operations; accumulation order may differ
        assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-9), name
    with torch.no_grad():
        assert torch.equal(checkpointed(*inputs()), plain(*inputs()))


def test_group_sizes_of_zero_turn_checkpointing_off(monkeypatch, single_thread):
    calls = []
    real = remat_module.checkpoint
    monkeypatch.setattr(remat_module, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    plain = TTTVideoDiT.from_config(build_config("tiny"), seed=1)
    model = TTTVideoDiT.from_config(build_config("tiny"), seed=1)
    apply_remat(model, remat_cfg(group=0, scan=0))
    assert all(m.scan_checkpoint_group_size is None for m in model.modules() if isinstance(m, TTTBase))
    want, got = gradients(plain), gradients(model)
    assert calls == []
    assert all(torch.equal(got[name], want[name]) for name in want)  # the same operations in the same order
    assert saved_bytes(model) == saved_bytes(plain)
    with pytest.raises(ValueError, match="remat is already applied"):
        apply_remat(model, remat_cfg(group=0, scan=0))


def saved_bytes(model: TTTVideoDiT) -> int:
    """Bytes autograd keeps for backward outside checkpointed regions during one forward."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*inputs())
    return total


def test_layer_groups_keep_fewer_activations(single_thread):
    plain = TTTVideoDiT.from_config(build_config("tiny"), seed=1)
    grouped = TTTVideoDiT.from_config(build_config("tiny"), seed=1)
    apply_remat(grouped, remat_cfg(group=2))
    assert saved_bytes(grouped) < saved_bytes(plain) / 4


def test_one_ttt_direction_is_checkpointed_alone(monkeypatch, single_thread):
    directions = []
    real = remat_module.checkpoint

    def spy(function, *args, **kwargs):
        if args and hasattr(args[-1], "reverse"):
            directions.append(args[-1].reverse)
        return real(function, *args, **kwargs)

    monkeypatch.setattr(remat_module, "checkpoint", spy)
    model = TTTVideoDiT.from_config(build_config("tiny"), seed=1)
    apply_remat(model, remat_cfg(reverse_ssm=True))
    out = model(*inputs())
    assert directions == [True, True]  # the reverse pass of each of the 2 layers, never the forward one
    out.sum().backward()  # recomputing a layer checkpoints its reverse pass again
    assert directions == [True] * 4


def test_shard_transformer_inputs_is_reported_as_not_implemented():
    model = TTTVideoDiT.from_config(build_config("tiny"), device="meta")
    cfg = remat_cfg()
    cfg.shard_transformer_inputs = True
    assert "not implemented" in apply_remat(model, cfg)[0]
    with pytest.raises(ValueError, match="remat is already applied"):
        apply_remat(model, cfg)
    fresh = TTTVideoDiT.from_config(build_config("tiny"), device="meta")
    with pytest.raises(ValueError, match="transformer_checkpoint_layer_group_size must be an int >= 0"):
        apply_remat(fresh, remat_cfg(group=-1))


def test_tensor_parallel_partials_are_the_mlp_and_qk_norms():
    model = TTTVideoDiT.from_config(build_config("tiny"), device="meta")
    names = {n for n, p in model.named_parameters() if any(p is q for q in tensor_parallel_partials(model))}
    pattern = re.compile(r"layers\.\d+\.(mlp\.layer[12]|seq_modeling_block\.[qk]_norm)\.(weight|bias)")
    assert names == {n for n, _ in model.named_parameters() if pattern.fullmatch(n)}
    assert len(names) == 2 * (4 + 4)


def test_global_grad_norm_of_plain_tensors():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    want = math.sqrt(sum(float(t.double().square().sum()) for t in grads))
    assert float(global_grad_norm(grads)) == pytest.approx(want, rel=1e-6)


def test_smoothed_is_a_bias_corrected_moving_average():
    values = [4.0, 2.0, 1.0, 3.0]
    average, want = 0.0, []
    for i, v in enumerate(values, start=1):
        average = 0.9 * average + 0.1 * v
        want.append(average / (1 - 0.9**i))
    assert smoothed(values) == pytest.approx(want)
    assert smoothed([5.0, 5.0, 5.0]) == pytest.approx([5.0, 5.0, 5.0])


def test_nice_ticks():
    assert nice_ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(1, 30) == pytest.approx([10, 20, 30])
    assert nice_ticks(0.013, 0.021) == pytest.approx([0.014, 0.016, 0.018, 0.020])
    assert nice_ticks(3.0, 3.0) == [3.0]


def test_loss_curve_svg():
    svg = loss_curve_svg([1.0, 0.9, float("nan"), 0.7])
    lines = re.findall(r'<polyline [^>]*points="([^"]*)"', svg)
    assert len(lines) == 2 and all(len(points.split()) == 3 for points in lines)  # the NaN is left out
    assert "step 4: 0.7" in svg
    log = loss_curve_svg([100.0, 10.0, 1.0])  # spans 100x: decades on the y axis
    assert ">100<" in log and ">10<" in log and ">1<" in log
    assert "no steps yet" in loss_curve_svg([])
