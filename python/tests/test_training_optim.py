"""Fine-tuning optimisation (spec 9.2): trainable sets and parameter groups (5B preset on meta), the LR
schedules, gradient clipping, and a tiny model overfitting one batch."""

from __future__ import annotations

import math

import pytest
import torch
from training_helpers import (
    optimizer_cfg,
    tiny_batch,
    tiny_model,
    training_cfg,
)

from ttt_video.contracts.config import load_config
from ttt_video.models import TTTVideoDiT, build_config
from ttt_video.training import (
    GROUP_NAMES,
    apply_trainable_set,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    diffusion_loss,
    group_parameters,
    is_trainable,
    lr_multiplier,
    parameter_group_name,
)

pytestmark = pytest.mark.usefixtures("single_thread")

# ------------------------------------------------------------------------------------------------
# trainable sets and parameter groups
# ------------------------------------------------------------------------------------------------

# Tensor counts per group for the 5B preset, read off spec 4.1 (16 global tensors, 42 layers):
#   global: other decay 6 (time_embed.0/.2, vid_proj, text_proj, final adaLN, final linear weights),
#           other no-decay 10 (their 6 biases + transformer_norm and final_layer.norm weight/bias).
#   per layer, other: decay 8 (pre_seq/pre_mlp adaLN, q, k, v, o, mlp.layer1, mlp.layer2 weights),
#           no-decay 16 (2 pre_seq LN, 2 pre_mlp LN, 2 adaLN biases, 4 q/k/v/o biases, 4 q_norm/k_norm,
#           2 mlp biases); of these, q/k/v/o/q_norm/k_norm are 4 decay + 8 no-decay.
#   per layer, TTT: decay = wq/wk/wv/wo weights 4 + learnable_ttt_lr_weight 1 + W1 (+ W2 for MLP)
#           + 4 gating_alpha = 10 linear / 11 MLP; no-decay = wq..wo biases 4 + post_norm 2
#           + learnable_ttt_lr_bias 1 + ttt_norm_weight/bias 2 + b1 (+ b2) = 10 linear / 11 MLP.
#   (decay, no-decay) tensors: other sft 6 + 42*8 = 342, 10 + 42*16 = 682; qkvo 168, 336; ttt none;
#   TTT (every set) MLP 462, 462, linear 420, 420. Totals: MLP 1948 = 16 + 42*46, linear 1864.
OTHER_COUNTS = {"sft": (342, 682), "qkvo": (168, 336), "ttt": (0, 0)}
TTT_COUNTS = {"ttt_mlp": (462, 462), "ttt_linear": (420, 420)}


def spec_group(name: str) -> str:
    lower = name.lower()
    ttt = "ttt" in lower or "ssm" in lower
    no_decay = any(word in lower for word in ("bias", "norm", "b1", "b2"))
    return ("ttt" if ttt else "other") + ("_no_decay" if no_decay else "_decay")


@pytest.mark.parametrize("ssm_layer", ["ttt_mlp", "ttt_linear"])
@pytest.mark.parametrize("adapter", ["sft", "qkvo", "ttt"])
def test_5b_parameter_groups(ssm_layer, adapter):
    model = TTTVideoDiT.from_config(build_config("5B", ssm_layer=ssm_layer), device="meta")
    cfg = optimizer_cfg(lr=3e-5, lr_ssm=2e-4)
    optimizer = build_optimizer(model, cfg, adapter)
    expected = {
        "ttt_decay": TTT_COUNTS[ssm_layer][0],
        "ttt_no_decay": TTT_COUNTS[ssm_layer][1],
        "other_decay": OTHER_COUNTS[adapter][0],
        "other_no_decay": OTHER_COUNTS[adapter][1],
    }
    counts = {group["name"]: len(group["params"]) for group in optimizer.param_groups}
    assert counts == {name: count for name, count in expected.items() if count}
    names = {id(param): name for name, param in model.named_parameters()}
    for group in optimizer.param_groups:
        assert group["lr"] == (2e-4 if group["is_ttt"] else 3e-5)
        assert group["weight_decay"] == (0.0 if group["name"].endswith("no_decay") else 1e-4)
        assert group["betas"] == (0.9, 0.95) and group["eps"] == 1e-8
        assert all(spec_group(names[id(p)]) == group["name"] for p in group["params"])
    in_groups = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        assert param.requires_grad == (id(param) in in_groups), name


def test_naming_rule_examples_from_the_spec():
    prefix = "layers.3.seq_modeling_block."
    assert parameter_group_name(prefix + "ssm.ttt.ttt_norm_weight") == "ttt_no_decay"
    assert parameter_group_name(prefix + "q_norm.weight") == "other_no_decay"
    assert parameter_group_name(prefix + "forward_ssm_gating_video.gating_alpha") == "ttt_decay"
    assert parameter_group_name(prefix + "ssm.ttt.W1") == "ttt_decay"
    assert parameter_group_name(prefix + "ssm.ttt.b2") == "ttt_no_decay"
    assert parameter_group_name(prefix + "ssm.ttt.learnable_ttt_lr_weight") == "ttt_decay"
    assert parameter_group_name("layers.3.mlp.layer1.weight") == "other_decay"
    assert is_trainable(prefix + "k.bias", "qkvo") and not is_trainable(prefix + "k.bias", "ttt")
    assert not is_trainable("layers.3.mlp.layer1.weight", "qkvo")
    assert is_trainable(prefix + "_checkpoint_wrapped_module.o.weight", "qkvo")
    assert not is_trainable("layers.3.pre_seq_adaLN_modulation.1.weight", "qkvo")
    with pytest.raises(ValueError, match="adapter_method must be one of"):
        is_trainable("x", "lora")


def test_build_optimizer_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="adapter_method is not set"):
        build_optimizer(model, optimizer_cfg(), None)
    with pytest.raises(ValueError, match="optimizer.name"):
        build_optimizer(model, optimizer_cfg(name="SGD"), "sft")
    with pytest.raises(ValueError, match="optimizer.lr_ssm"):
        build_optimizer(model, optimizer_cfg(lr_ssm=-1.0), "sft")
    with pytest.raises(ValueError, match="no trainable parameter"):
        build_optimizer(tiny_model(ssm_layer="none"), optimizer_cfg(), "ttt")


def test_ttt_set_changes_only_ttt_parameters_and_gates():
    model = tiny_model()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = build_optimizer(model, optimizer_cfg(lr=1e-3, lr_ssm=1e-3), "ttt")
    x0, text, noise = tiny_batch(2)
    diffusion_loss(model, x0, text, torch.tensor([100, 600]), noise).mean().backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    ttt_names = {name for name, _ in model.named_parameters() if ".ssm." in name or "_ssm_gating_" in name}
    assert changed == ttt_names
    # The gate without gradient (see above) moves by AdamW's decoupled weight decay alone.
    dead = "layers.1.seq_modeling_block.backward_ssm_gating_text.gating_alpha"
    torch.testing.assert_close(
        dict(model.named_parameters())[dead].detach(), before[dead] * (1 - 1e-3 * 1e-4)
    )
    assert len(ttt_names) == 2 * 22
    for name, p in model.named_parameters():
        assert p.requires_grad == (name in ttt_names)
        assert (p.grad is None) == (name not in ttt_names)
    assert sum(len(optimizer.state[p]) > 0 for g in optimizer.param_groups for p in g["params"]) == 2 * 22
    assert apply_trainable_set(model, "qkvo") == 2 * (12 + 22) and apply_trainable_set(model, "sft") == 108
    assert set(group_parameters(model)) == set(GROUP_NAMES)


# ------------------------------------------------------------------------------------------------
# learning-rate schedules and clipping
# ------------------------------------------------------------------------------------------------


def spec_multiplier(s, schedule, warmup, steps, peak, end):
    if s < warmup:
        return (s + 1) / warmup
    if schedule == "linear":
        return 1 - min((s - warmup) / max(1, steps - warmup), 1) * (1 - end / peak)
    return (end + (peak - end) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))) / peak


def test_lr_multipliers_of_the_3s_mlp_preset(repo_root):
    # lr = lr_end = 1e-5 (linear), lr_ssm = 1e-4 (cosine), warm-up 100 of 5000 steps (spec 1.5).
    cfg = load_config(repo_root / "configs" / "train" / "ttt-mlp" / "3s.toml")
    opt, train = cfg.optimizer, cfg.training
    assert (opt.lr, opt.lr_end, opt.lr_ssm, train.warmup_steps, train.steps) == (1e-5, 1e-5, 1e-4, 100, 5000)
    steps = dict(warmup_steps=train.warmup_steps, total_steps=train.steps, lr_end=opt.lr_end)
    other = dict(schedule=opt.lr_schedule, **steps, lr_peak=opt.lr)
    ttt = dict(schedule=opt.lr_ssm_schedule, **steps, lr_peak=opt.lr_ssm)
    for kw in (other, ttt):
        assert lr_multiplier(0, **kw) == pytest.approx(0.01)
        assert lr_multiplier(49, **kw) == pytest.approx(0.5)
        assert lr_multiplier(99, **kw) == pytest.approx(1.0)
        assert lr_multiplier(100, **kw) == pytest.approx(1.0)
    for s in (100, 1325, 2550, 4999, 5000, 9000):
        assert lr_multiplier(s, **other) == pytest.approx(1.0)  # lr_end = lr_peak: constant after warm-up
    assert lr_multiplier(1325, **ttt) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_multiplier(2550, **ttt) == pytest.approx(0.55)
    assert lr_multiplier(5000, **ttt) == pytest.approx(0.1)
    assert lr_multiplier(9000, **ttt) == pytest.approx(0.1)  # clamped past the end
    for s in (0, 57, 99, 100, 101, 777, 2550, 4999, 5000):
        for kw in (other, ttt):
            args = (kw["schedule"], kw["warmup_steps"], kw["total_steps"], kw["lr_peak"], kw["lr_end"])
            assert lr_multiplier(s, **kw) == pytest.approx(spec_multiplier(s, *args), rel=1e-12)


def test_lr_multiplier_linear_to_zero_warmup_zero_and_zero_peak():
    kw = dict(schedule="linear", warmup_steps=50, total_steps=5000, lr_peak=1e-4, lr_end=0.0)
    assert lr_multiplier(2525, **kw) == pytest.approx(0.5)
    assert lr_multiplier(5000, **kw) == 0.0 and lr_multiplier(6000, **kw) == 0.0
    for schedule in ("linear", "cosine"):
        no_warmup = dict(schedule=schedule, warmup_steps=0, total_steps=10, lr_peak=1e-3, lr_end=1e-4)
        assert lr_multiplier(0, **no_warmup) == 1.0
        assert lr_multiplier(10, **no_warmup) == pytest.approx(0.1)
        assert lr_multiplier(3, **{**no_warmup, "lr_peak": 0.0}) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_multiplier(0, schedule="step", warmup_steps=0, total_steps=1, lr_peak=1.0, lr_end=0.0)


def test_build_scheduler_drives_each_group():
    model = tiny_model()
    opt_cfg = optimizer_cfg(lr=2e-3, lr_ssm=1e-3, lr_end=1e-4, lr_schedule="linear", lr_ssm_schedule="cosine")
    train_cfg = training_cfg(warmup_steps=3, steps=10)
    optimizer = build_optimizer(model, opt_cfg, "qkvo")
    scheduler = build_scheduler(optimizer, opt_cfg, train_cfg)
    assert len(optimizer.param_groups) == 4
    for s in range(11):
        for group in optimizer.param_groups:
            if group["is_ttt"]:
                expected = 1e-3 * spec_multiplier(s, "cosine", 3, 10, 1e-3, 1e-4)
            else:
                expected = 2e-3 * spec_multiplier(s, "linear", 3, 10, 2e-3, 1e-4)
            assert group["lr"] == pytest.approx(expected, rel=1e-12), (s, group["name"])
        optimizer.step()
        scheduler.step()
    with pytest.raises(ValueError, match="warmup_steps"):
        build_scheduler(optimizer, opt_cfg, training_cfg(warmup_steps=11, steps=10))
    with pytest.raises(ValueError, match="build_optimizer"):
        build_scheduler(torch.optim.AdamW(model.parameters()), opt_cfg, train_cfg)


def test_clip_gradients_returns_the_pre_clip_norm():
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)
    a.grad, b.grad = torch.tensor([3.0, 0.0, 4.0]), torch.full((2, 2), 6.0)
    norm = clip_gradients([a, b], 0.1)
    assert norm.item() == pytest.approx(13.0)  # sqrt(9 + 16 + 4 * 36)
    clipped = torch.cat([a.grad.flatten(), b.grad.flatten()]).norm()
    assert clipped.item() == pytest.approx(0.1, rel=1e-5)
    assert clip_gradients([a, b], math.inf).item() == pytest.approx(clipped.item())  # measures only
    assert torch.cat([a.grad.flatten(), b.grad.flatten()]).norm().item() == pytest.approx(clipped.item())
    with pytest.raises(ValueError, match="gradient_clipping_norm"):
        clip_gradients([a, b], 0.0)


# ------------------------------------------------------------------------------------------------
# end to end: a tiny model overfits one batch
# ------------------------------------------------------------------------------------------------


def test_tiny_model_overfits_a_fixed_batch():
    # 150 steps of B = 2 take ~15 s on one thread; measured: 1.36 -> 0.0028 (~500x), 10x by step 72.
    model = tiny_model()
    x0, text, noise = tiny_batch(2, seed=1)
    index = torch.tensor([300, 700])
    constant = optimizer_cfg(lr=1e-3, lr_ssm=1e-3, lr_end=1e-3)
    optimizer = build_optimizer(model, constant, "sft")
    scheduler = build_scheduler(optimizer, constant, training_cfg(warmup_steps=0, steps=150))
    losses = []
    for _ in range(150):
        loss = diffusion_loss(model, x0, text, index, noise).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), math.inf)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
