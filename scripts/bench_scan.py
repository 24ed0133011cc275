#!/usr/bin/env python
"""The TTT scan, side by side: eager vs torch.compile (vs the Triton kernel on CUDA).

    python scripts/bench_scan.py --device cpu --threads 1
    python scripts/bench_scan.py --device cuda --dtype bfloat16

Configs: ``tiny`` (64 wide, 2 heads of 32, mini-batch 16, latents 8x12) and ``mid`` (the ``debug``
preset: 512 wide, 8 heads of 64, mini-batch 64, latents 16x24), both a 3 s video (one segment), batch 1.
Every variant is timed in the same run, round-robin (one call of each per round; the median of the
rounds), so that load on a shared machine hits them alike. Compilation happens in the warm-up round.

Tables:
1. ms per scan step (one mini-batch, all heads) for TTT-Linear and TTT-MLP, and the step's matmul floor
   (its FLOPs at the measured matmul rate).
2. ms per DiT forward with ``ssm_layer="none"`` and ``"ttt_mlp"`` and their ratio, per scan variant.
3. Scan checkpointing (training, TTT-MLP): bytes the forward leaves alive for backward (CPU: from the
   profiler's allocation records; CUDA: the rise in allocated memory) and forward+backward ms, per group
   size G.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    from ttt_video.models import (
        SequenceLayout,
        TTTVideoDiT,
        build_config,
        ttt_linear_step,
        ttt_mlp_step,
        ttt_scan,
    )
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from ttt_video.models import (
        SequenceLayout,
        TTTVideoDiT,
        build_config,
        ttt_linear_step,
        ttt_mlp_step,
        ttt_scan,
    )

# name: (preset, latent height, latent width, text length); 3 s = one segment of 13 latent frames.
CONFIGS = {"tiny": ("tiny", 8, 12, 8), "mid": ("debug", 16, 24, 32)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def round_robin(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each function, timed one call of each per round after a warm-up round."""
    for fn in fns.values():
        fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int = 1024) -> float:
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    return 2 * size**3 / round_robin({"mm": lambda: a @ b}, 5, device)["mm"]


def scan_inputs(mlp: bool, heads: int, num_mb: int, cs: int, dim: int, device, dtype):
    """Random scan inputs shaped as one TTT pass of batch 1: state, q, k, targets, eta, ln weight, ln bias."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    hidden = 4 * dim
    params = [
        randn(heads, dim, hidden if mlp else dim, scale=0.02),
        torch.zeros(heads, 1, hidden if mlp else dim),
    ]
    if mlp:
        params += [randn(heads, hidden, dim, scale=0.02), torch.zeros(heads, 1, dim)]
    state = tuple(p.to(device).expand(1, *p.shape) for p in params)
    q, k = (
        torch.nn.functional.normalize(randn(1, heads, num_mb, cs, dim), dim=-1).to(
            dtype
        )
        for _ in range(2)
    )
    targets = randn(1, heads, num_mb, cs, dim)
    eta = (torch.rand(1, heads, num_mb, cs, generator=g) * 0.1 / (dim * cs)).to(device)
    return (
        state,
        q,
        k,
        targets,
        eta,
        torch.ones(heads, dim, device=device),
        torch.zeros(heads, dim, device=device),
    )


def scan_variants(
    mlp: bool, inputs, device: torch.device
) -> dict[str, Callable[[], object]]:
    step = ttt_mlp_step if mlp else ttt_linear_step
    compiled = torch.compile(step, dynamic=False)
    state, q, k, *rest = inputs
    variants = {
        "eager": lambda: ttt_scan(step, state, q.float(), k.float(), *rest),
        "compiled": lambda: ttt_scan(compiled, state, q.float(), k.float(), *rest),
    }
    if device.type == "cuda":
        from ttt_video.kernels import ttt_scan_triton

        variants["triton"] = lambda: ttt_scan_triton(state, q, k, *rest)
    return variants


def step_flops(mlp: bool, heads: int, cs: int, dim: int) -> float:
    """Matmul FLOPs of one step (all heads): 3 (Linear) or 7 (MLP) products of cs x d x width."""
    return heads * cs * dim * (2 * 3 * dim if not mlp else 2 * 7 * 4 * dim)


def print_step_table(names, args, device, dtype, rate) -> None:
    print(
        "\n| config | inner model | NM x cs x d (heads) | variant | ms / step | x floor |"
    )
    print("|---|---|---|---|---|---|")
    for name in names:
        cfg, layout = model_config(name)
        num_mb = layout.num_tokens // cfg.mini_batch_size
        for mlp in (False, True):
            inputs = scan_inputs(
                mlp,
                cfg.num_heads,
                num_mb,
                cfg.mini_batch_size,
                cfg.head_dim,
                device,
                dtype,
            )
            with torch.inference_mode():
                times = round_robin(
                    scan_variants(mlp, inputs, device), args.repeats, device
                )
            floor = (
                step_flops(mlp, cfg.num_heads, cfg.mini_batch_size, cfg.head_dim) / rate
            )
            shape = (
                f"{num_mb} x {cfg.mini_batch_size} x {cfg.head_dim} ({cfg.num_heads})"
            )
            for variant, seconds in times.items():
                per_step = seconds / num_mb
                model = "TTT-MLP" if mlp else "TTT-Linear"
                print(
                    f"| {name} | {model} | {shape} | {variant} | {per_step * 1e3:.3f} | {per_step / floor:.1f} |"
                )
            sys.stdout.flush()


def model_config(name: str):
    preset, height, width, text_length = CONFIGS[name]
    cfg = build_config(preset)
    layout = SequenceLayout(
        1, text_length, 13, height // cfg.patch_size, width // cfg.patch_size
    )
    if layout.num_tokens % cfg.mini_batch_size:
        raise SystemExit(
            f"config {name}: {layout.num_tokens} tokens do not fill mini-batches"
        )
    return cfg, layout


def forward_inputs(cfg, layout, device, dtype):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(
        1,
        13,
        cfg.in_channels,
        layout.grid_height * 2,
        layout.grid_width * 2,
        generator=g,
    )
    text = torch.randn(1, 1, layout.text_length, cfg.text_dim, generator=g)
    return (
        latents.to(device, dtype),
        text.to(device, dtype),
        torch.tensor([999.0], device=device),
    )


def print_forward_table(names, args, device, dtype) -> None:
    kernels = ["eager", "compiled"] + (["triton"] if device.type == "cuda" else [])
    print("\n| config | tokens | variant | none ms | ttt_mlp ms | ratio |")
    print("|---|---|---|---|---|---|")
    for name in names:
        cfg, layout = model_config(name)
        inputs = forward_inputs(cfg, layout, device, dtype)
        models = {}
        for variant in kernels:
            kernel = "triton" if variant == "triton" else "eager"
            for ssm in ("none", "ttt_mlp"):
                variant_cfg = build_config(
                    CONFIGS[name][0], ssm_layer=ssm, ttt_kernel=kernel
                )
                model = TTTVideoDiT.from_config(
                    variant_cfg,
                    device=device,
                    dtype=dtype,
                    compile=variant == "compiled",
                )
                models[(variant, ssm)] = model.eval()
        with torch.inference_mode():
            fns = {key: (lambda m=m, x=inputs: m(*x)) for key, m in models.items()}
            times = round_robin(fns, args.repeats, device)
        for variant in kernels:
            none, mlp = times[(variant, "none")], times[(variant, "ttt_mlp")]
            print(
                f"| {name} | {layout.num_tokens} | {variant} | {none * 1e3:.1f} | {mlp * 1e3:.1f} | {mlp / none:.2f} |"
            )
        sys.stdout.flush()


def retained_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Bytes allocated by ``fn`` that are still alive after it (its output and the autograd graph)."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        result = fn()
        synchronize(device)
        return torch.cuda.memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    return sum(event.self_cpu_memory_usage for event in prof.events())


def remat_rows(name: str, args, device: torch.device, dtype: torch.dtype) -> list[str]:
    cfg, layout = model_config(name)
    num_mb = layout.num_tokens // cfg.mini_batch_size
    state, q, k, targets, eta, ln_w, ln_b = scan_inputs(
        True, cfg.num_heads, num_mb, cfg.mini_batch_size, cfg.head_dim, device, dtype
    )
    leaves = [t.detach().float().requires_grad_() for t in (q, k, targets, eta)]
    params = [p[0].detach().clone().requires_grad_() for p in state]

    def forward(group):
        initial = tuple(p.expand(1, *p.shape) for p in params)
        return ttt_scan(
            ttt_mlp_step, initial, *leaves, ln_w, ln_b, checkpoint_group_size=group
        )

    groups = [None, 1, 4, num_mb]
    memory = {
        group: retained_bytes(lambda g=group: forward(g), device) for group in groups
    }
    fns = {group: (lambda g=group: forward(g).sum().backward()) for group in groups}
    times = round_robin(fns, args.repeats, device)
    rows = []
    for group in groups:
        label = "off" if group is None else str(group)
        rows.append(
            f"| {name} | {num_mb} | {label} | {memory[group] / 2**20:.2f} | {times[group] * 1e3:.1f} |"
        )
    return rows


def print_remat_table(names, args, device, dtype) -> None:
    print("\n| config | NM | G | retained MiB after forward | forward+backward ms |")
    print("|---|---|---|---|---|")
    for name in names:
        print("\n".join(remat_rows(name, args, device, dtype)))
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", default=None, help="float32 on CPU, bfloat16 on CUDA by default"
    )
    parser.add_argument("--configs", default="tiny,mid")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--skip-forward", action="store_true", help="only the scan and remat tables"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(
        torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    )
    names = [n for n in args.configs.split(",") if n]
    for name in names:
        if name not in CONFIGS:
            raise SystemExit(
                f"--configs: unknown config {name!r}; choose from {sorted(CONFIGS)}"
            )
    rate = matmul_rate(device, dtype)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"# {where}, {dtype}; 1024^3 matmul {rate / 1e9:.1f} GFLOP/s; median of {args.repeats} round-robin rounds"
    )
    print_step_table(names, args, device, dtype, rate)
    if not args.skip_forward:
        print_forward_table(names, args, device, dtype)
    print_remat_table(names, args, device, dtype)


if __name__ == "__main__":
    main()
