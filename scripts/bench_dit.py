#!/usr/bin/env python
"""Time one DiT forward per video length and compare it with the FLOP floor.

    python scripts/bench_dit.py --preset 5B --dtype bfloat16 --lengths 3,9,63 --device cuda
    python scripts/bench_dit.py --preset tiny --device cpu --dtype float32

The model has random weights. FLOPs are counted from the shapes: every linear layer (patch and text
embedding, adaLN, q/k/v/o, MLP, TTT projections and learning-rate heads, final layer), attention QK^T and
PV per segment window, and the TTT scan's matmuls. The floor is FLOPs / (the device's measured matmul rate
in the chosen dtype, from a large square matmul).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    from ttt_video.models import DiTConfig, SequenceLayout, TTTVideoDiT, build_config
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    from ttt_video.models import DiTConfig, SequenceLayout, TTTVideoDiT, build_config

# txt_maxlen of the shipped eval configs at 480x720 (spec 1.4), keyed by seconds.
REFERENCE_TEXT_LENGTHS = {3: 498, 9: 502, 18: 471, 30: 497, 63: 458}
DEFAULT_LATENT_SIZE = {"5B": (60, 90), "debug": (60, 90), "tiny": (8, 12)}


def text_length_for(
    seconds: int, cfg: DiTConfig, grid: tuple[int, int], minimum: int
) -> int:
    """The reference txt_maxlen at 480x720, else the smallest L >= minimum that fills whole mini-batches."""
    segments = seconds // 3
    tokens_per_frame = grid[0] * grid[1]
    video_tokens = (12 * segments + 1) * tokens_per_frame
    reference = REFERENCE_TEXT_LENGTHS.get(seconds)
    if (
        grid == (30, 45)
        and reference is not None
        and (segments * reference + video_tokens) % cfg.mini_batch_size == 0
    ):
        return reference
    length = minimum
    while (segments * length + video_tokens) % cfg.mini_batch_size:
        length += 1
    return length


def forward_flops(
    cfg: DiTConfig, layout: SequenceLayout, batch: int = 1
) -> dict[str, float]:
    """Multiply-add FLOPs (2 per MAC) of one forward, by kind."""
    D, E, H, d = cfg.model_dim, cfg.time_embed_dim, cfg.num_heads, cfg.head_dim
    N, Nv, Nt = layout.num_tokens, layout.num_video_tokens, layout.num_text_tokens
    patch_out = cfg.patch_size**2 * cfg.out_channels
    patch_in = cfg.patch_size**2 * cfg.in_channels

    linear = 2 * Nv * patch_in * D + 2 * Nt * cfg.text_dim * D + 2 * Nv * D * patch_out
    linear += 2 * (
        D * E + E * E + cfg.num_layers * 2 * E * 6 * D + E * 2 * D
    )  # per sample, negligible
    per_layer = 4 * 2 * N * D * D + 2 * 2 * N * D * cfg.mlp_ratio * D
    scan = 0.0
    if cfg.has_ttt:
        per_layer += 2 * (
            4 * 2 * N * D * D + 2 * N * D * H
        )  # two passes: wq/wk/wv/wo + lr heads
        if cfg.ssm_layer == "ttt_linear":
            scan_per_token_head = 6 * d * d  # K W, (eta K)^T G, Q W'
        else:
            hidden = cfg.ttt_mlp_ratio * d
            scan_per_token_head = (
                14 * d * hidden
            )  # K W1, X2 W2, G2 W2^T, dW2, dW1, Q W1', X W2'
        scan = cfg.num_layers * 2 * N * H * scan_per_token_head
    linear += cfg.num_layers * per_layer
    window = layout.text_length + layout.window_frames * layout.tokens_per_frame
    attention = cfg.num_layers * layout.num_segments * 4 * window * window * D
    return {
        "linear": batch * linear,
        "attention": batch * attention,
        "ttt_scan": batch * scan,
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_rate(
    device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5
) -> float:
    """FLOP/s of a square ``size`` matmul (best of ``repeats``)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def time_forward(
    model: TTTVideoDiT, inputs, device: torch.device, warmup: int, repeats: int
) -> float:
    """Median seconds of one forward."""
    with torch.inference_mode():
        for _ in range(warmup):
            model(*inputs)
        synchronize(device)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(*inputs)
            synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="5B")
    parser.add_argument(
        "--ssm-layer", default="ttt_mlp", choices=["ttt_mlp", "ttt_linear", "none"]
    )
    parser.add_argument(
        "--mini-batch-size", type=int, default=None, help="default: the preset's"
    )
    parser.add_argument(
        "--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"]
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--lengths", default="3,9,63", help="video lengths in seconds (multiples of 3)"
    )
    parser.add_argument(
        "--latent-size",
        default=None,
        help="HxW of the latents, default 60x90 (8x12 for tiny)",
    )
    parser.add_argument("--min-text-length", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--matmul-size", type=int, default=None, help="default 8192 on GPU, 1024 on CPU"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the TTT step and the MLP"
    )
    return parser.parse_args(argv)


def bench_config(args: argparse.Namespace) -> tuple[DiTConfig, tuple[int, int]]:
    """The preset with the flags' overrides, and the latent size (H, W)."""
    overrides = {"ssm_layer": args.ssm_layer}
    if args.mini_batch_size:
        overrides["mini_batch_size"] = args.mini_batch_size
    cfg = build_config(args.preset, **overrides)
    if args.latent_size:
        height, width = (int(v) for v in args.latent_size.lower().split("x"))
    else:
        height, width = DEFAULT_LATENT_SIZE.get(args.preset, (60, 90))
    return cfg, (height, width)


def forward_inputs(
    cfg: DiTConfig,
    seconds: int,
    latent: tuple[int, int],
    min_text_length: int,
    device,
    dtype,
):
    """``(layout, (latents, text, timesteps))`` of one ``seconds``-long video, random, batch 1."""
    if seconds % 3 or seconds <= 0:
        raise SystemExit(f"--lengths: {seconds} is not a positive multiple of 3")
    n, frames = seconds // 3, 12 * (seconds // 3) + 1
    grid = (latent[0] // cfg.patch_size, latent[1] // cfg.patch_size)
    length = text_length_for(seconds, cfg, grid, min_text_length)
    layout = SequenceLayout(n, length, frames, grid[0], grid[1])
    generator = torch.Generator().manual_seed(seconds)
    latents = torch.randn(1, frames, cfg.in_channels, *latent, generator=generator)
    text = torch.randn(1, n, length, cfg.text_dim, generator=generator)
    inputs = (
        latents.to(device, dtype),
        text.to(device, dtype),
        torch.tensor([999.0], device=device),
    )
    return layout, inputs


def table_row(
    seconds: int,
    layout: SequenceLayout,
    flops: dict[str, float],
    seconds_per_forward: float,
    rate: float,
):
    """One row of the printed table."""
    total = sum(flops.values())
    floor = total / rate
    parts = " / ".join(
        f"{flops[k] / 1e9:.1f}" for k in ("linear", "attention", "ttt_scan")
    )
    return (
        f"| {seconds} s | {layout.num_segments} | {layout.num_frames} | {layout.text_length} | {layout.num_tokens} | "
        f"{total / 1e9:.1f} ({parts}) | {seconds_per_forward * 1e3:.1f} | {total / seconds_per_forward / 1e12:.3f} | "
        f"{floor * 1e3:.1f} | {seconds_per_forward / floor:.2f} |"
    )


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    cfg, latent = bench_config(args)
    matmul_size = args.matmul_size or (8192 if device.type == "cuda" else 1024)
    rate = measure_matmul_rate(device, dtype, matmul_size)
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"# device {device_name}, {args.dtype}; matmul {matmul_size}^3: {rate / 1e12:.3f} TFLOP/s"
    )
    print(
        f"# preset {args.preset} ({cfg.ssm_layer}, mini-batch {cfg.mini_batch_size}), latents "
        f"{latent[0]}x{latent[1]}, warm-up {args.warmup}, median of {args.repeats}{', compiled' if args.compile else ''}"
    )
    model = TTTVideoDiT.from_config(
        cfg, device=device, dtype=dtype, seed=0, compile=args.compile
    ).eval()
    print(
        "| length | n | T | L | tokens | GFLOP (lin / attn / scan) | ms | TFLOP/s | floor ms | x floor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seconds in (int(s) for s in args.lengths.split(",")):
        layout, inputs = forward_inputs(
            cfg, seconds, latent, args.min_text_length, device, dtype
        )
        seconds_per_forward = time_forward(
            model, inputs, device, args.warmup, args.repeats
        )
        print(
            table_row(
                seconds, layout, forward_flops(cfg, layout), seconds_per_forward, rate
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
