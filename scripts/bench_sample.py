#!/usr/bin/env python
"""Time sampling end to end: seconds per denoising step (both guidance branches), decode time, peak memory.

    # the tiny bundle through the real entry point (python -m ttt_video sample), on a CPU
    python scripts/bench_sample.py --preset tiny --device cpu --seconds 9 --steps 50
    # the 5B preset with random weights (DiT and VAE; random text embeddings instead of T5), on a GPU
    python scripts/bench_sample.py --preset 5B --device cuda --seconds 3 --steps 50 --dtype bfloat16

The tiny run reads its timings from the run's meta.json (what every user run records). The 5B run times the
same sampler and guidance code around a random-weight DiT, then the VAE's windowed decode, and reports the
FLOP floor per step from scripts/bench_dit.py's count at the device's measured matmul rate.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    import ttt_video  # noqa: F401
except ImportError:  # a checkout without the package installed
    sys.path.insert(0, str(ROOT / "python"))


def bench_tiny(seconds: int, steps: int, threads: int | None) -> None:
    from ttt_video.__main__ import main as main_entry
    from ttt_video.demo.tiny_bundle import make_tiny_bundle

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = make_tiny_bundle(tmp / "bundle")
        run = tmp / "run"
        run.mkdir()
        config = (ROOT / "configs" / "eval" / "tiny" / f"{seconds}s.toml").read_text()
        config = config.replace(
            "num_denoising_steps = 10", f"num_denoising_steps = {steps}"
        )
        (run / "config.toml").write_text(
            config + f'\n[checkpoint]\nmodel_dir = "{bundle}"\n'
        )
        segments = seconds // 3
        video = [
            {"text": f"segment {i}", "requires_scene_transition": i > 0}
            for i in range(segments)
        ]
        (run / "storyboards.jsonl").write_text(json.dumps(video) + "\n")
        started = time.perf_counter()
        if main_entry(["sample", "--run-dir", str(run)]) != 0:
            raise SystemExit((run / "events.jsonl").read_text())
        total = time.perf_counter() - started
        meta = json.loads((run / "video-0" / "meta.json").read_text())
    t = meta["timings"]
    print(
        f"tiny bundle, {seconds} s ({meta['frames']} frames, {meta['width']}x{meta['height']}), {steps} steps, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        "| end to end (s) | model load + T5 (s) | sampling (s) | s/step (median) | decode (s) | s/window (median) |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {total:.1f} | {total - t['sampling_seconds'] - t['decode_seconds']:.1f} | {t['sampling_seconds']:.1f} | "
        f"{statistics.median(t['seconds_per_step']):.3f} | {t['decode_seconds']:.1f} | "
        f"{statistics.median(t['seconds_per_window']):.3f} |"
    )


def load_bench_dit():
    """scripts/bench_dit.py as a module (its FLOP count, text lengths and matmul rate)."""
    spec = importlib.util.spec_from_file_location(
        "bench_dit", ROOT / "scripts" / "bench_dit.py"
    )
    bench_dit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_dit)
    return bench_dit


def random_models(preset: str, device: torch.device, dtype: torch.dtype):
    """A random-weight DiT of ``preset`` and the matching VAE (tiny or CogVideoX-5b sized)."""
    from ttt_video.demo.tiny_parts import TINY_VAE_CONFIG
    from ttt_video.models import TTTVideoDiT, build_config
    from ttt_video.vae import COGVIDEOX_5B_VAE_CONFIG, CogVideoXVAE

    cfg = build_config(preset)
    dit = (
        TTTVideoDiT.from_config(cfg, device=device, dtype=dtype)
        .eval()
        .requires_grad_(False)
    )
    vae_config = TINY_VAE_CONFIG if preset == "tiny" else COGVIDEOX_5B_VAE_CONFIG
    vae = (
        CogVideoXVAE(vae_config)
        .to(device=device, dtype=dtype)
        .eval()
        .requires_grad_(False)
    )
    return cfg, dit, vae


def timed_sampling(dit, text, noise, steps: int, generator, device, dtype, synchronize):
    """x0 of ``steps`` denoising steps (both branches as one batch) and the seconds of each step."""
    from ttt_video.sampling import guided_denoiser, sample, step_table

    table = step_table(steps)
    times: list[float] = []
    last = [time.perf_counter()]

    def on_step(step: int, total: int) -> None:
        synchronize(device)
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    denoise = guided_denoiser(
        dit, text, torch.zeros_like(text), table, model_dtype=dtype, cfg_batch=True
    )
    return sample(denoise, noise, table, generator, callback=on_step), times


def peak_gib(device: torch.device) -> float:
    return (
        torch.cuda.max_memory_allocated() / 2**30
        if device.type == "cuda"
        else float("nan")
    )


def bench_random(
    preset: str, device: torch.device, seconds: int, steps: int, dtype: torch.dtype
) -> None:
    from ttt_video.models import SequenceLayout
    from ttt_video.sampling import initial_noise, video_generator

    bench_dit = load_bench_dit()
    cfg, dit, vae = random_models(preset, device, dtype)
    grid = bench_dit.DEFAULT_LATENT_SIZE[preset]
    n, T = seconds // 3, 12 * (seconds // 3) + 1
    L = bench_dit.text_length_for(seconds, cfg, (grid[0] // 2, grid[1] // 2), 8)
    layout = SequenceLayout(n, L, T, grid[0] // 2, grid[1] // 2)
    step_flops = 2 * sum(
        bench_dit.forward_flops(cfg, layout).values()
    )  # two guidance branches
    rate = bench_dit.measure_matmul_rate(
        device, dtype, 8192 if device.type == "cuda" else 1024
    )
    text = torch.randn(1, n, L, cfg.text_dim, device=device, dtype=dtype)
    generator = video_generator(0, 0)
    noise = initial_noise((1, T, 16, grid[0], grid[1]), generator, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        latents, times = timed_sampling(
            dit, text, noise, steps, generator, device, dtype, bench_dit.synchronize
        )
        sampling_peak = peak_gib(device)
        started = time.perf_counter()
        z = latents.to(dtype).permute(0, 2, 1, 3, 4)
        frames = sum(f.shape[2] for f in vae.decode_stream(z, latent_scale=1.0))
        bench_dit.synchronize(device)
        decode = time.perf_counter() - started
    per_step = statistics.median(times[1:] or times)
    floor = step_flops / rate
    print(
        f"{preset}, {seconds} s ({frames} frames), {steps} steps, {dtype}, {device}; matmul rate {rate / 1e12:.0f} TFLOP/s"
    )
    print(
        "| s/step (median) | FLOP floor s/step | x floor | decode (s) | peak GiB (sampling) | peak GiB (with decode) |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {per_step:.3f} | {floor:.3f} | {per_step / floor:.2f} | {decode:.1f} | {sampling_peak:.1f} | "
        f"{peak_gib(device):.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", choices=("tiny", "debug", "5B"))
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--seconds", type=int, default=9, choices=(3, 9, 18, 30, 63))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32")
    )
    parser.add_argument("--threads", type=int, help="CPU threads (tiny)")
    args = parser.parse_args()
    if args.preset == "tiny":
        if args.seconds not in (3, 9):
            parser.error("the tiny demo configs cover 3 s and 9 s")
        bench_tiny(args.seconds, args.steps, args.threads)
    else:
        bench_random(
            args.preset,
            torch.device(args.device),
            args.seconds,
            args.steps,
            getattr(torch, args.dtype),
        )


if __name__ == "__main__":
    main()
