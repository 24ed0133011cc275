"""The items of scripts/device-check, one per process: ``python -m device_check.items ITEM RESULT.json
[--smoke]`` with scripts/ and python/ on PYTHONPATH (the runner sets it).

Each item writes its result JSON as it goes (``Result.update``), so a timed-out or crashed item keeps what
it measured. A result's ``status`` is "ok" unless the item sets "failed" or "blocked" (with a ``reason``).
Full mode measures the 5B preset in bf16 on CUDA; ``--smoke`` runs the same code on a CPU with the tiny
preset in float32 (Triton and CUDA graphs are replaced by what runs on a CPU, and the rows say so).

FLOPs, text lengths and the matmul rate come from scripts/bench_dit.py.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench_dit
import torch
from ttt_video.models import build_config

from .common import (
    Result,
    Settings,
    free,
    matmul_rate,
    random_dit,
    set_ttt_kernel,
    synchronize,
    timed,
    video_inputs,
)

CUDA_TESTS = (
    "tests/test_cuda.py",
    "tests/test_kernels.py",
    "tests/test_graphs.py::test_cuda_graph_replay_matches_eager",
    "tests/test_sampling_seeds.py::test_cuda_runs_draw_the_cpu_noise",
)
GIB = 2**30
# What torch reports as an 80 GB H100's total memory (85,031,714,816 bytes), less ~1 GiB of CUDA context.
H100_80GB_USABLE_GIB = 78.2


# ----------------------------------------------------------------------------------------------- items


def item_doctor(s: Settings, out: Result) -> None:
    """The Python half's doctor report, the packages the product imports at run time, and nvidia-smi."""
    from ttt_video.doctor import doctor_report

    out.update(doctor=doctor_report(Path.cwd()))
    modules = (
        "torch",
        "triton",
        "transformers",
        "sentencepiece",
        "safetensors",
        "jsonschema",
        "tomli_w",
        "av",
    )
    out.update(imports={m: importlib.util.find_spec(m) is not None for m in modules})
    cuda = torch.cuda.is_available()
    out.update(
        cuda_available=cuda, torch=torch.__version__, cuda_version=torch.version.cuda
    )
    if cuda:
        props = torch.cuda.get_device_properties(0)
        out.update(
            gpu={
                "name": props.name,
                "memory_gib": round(props.total_memory / GIB, 1),
                "sms": props.multi_processor_count,
            }
        )
    try:
        smi = subprocess.run(
            ["nvidia-smi"], capture_output=True, text=True, timeout=20, check=False
        )
        out.update(nvidia_smi=smi.stdout[-4000:])
    except (OSError, subprocess.TimeoutExpired) as e:
        out.update(nvidia_smi=f"not available ({type(e).__name__})")
    if not s.smoke and not cuda:
        out.update(
            status="failed",
            reason="torch sees no CUDA device; run with --smoke on a CPU",
        )


def item_cuda_tests(s: Settings, out: Result) -> None:
    """The CUDA-only tests (pytest, junit XML read back). Smoke: collected only, which checks that the
    named tests still exist (on a CPU they skip, and CI runs the rest of them anyway)."""
    from device_check.pytest_run import run_pytest

    out.update(run_pytest(CUDA_TESTS, collect_only=s.smoke))


def item_forward(s: Settings, out: Result) -> None:
    """One forward (batch 1) at 3 s and 9 s with the eager scan, the Triton scan, and CUDA graphs of the
    Triton forward, each against the FLOP floor. Smoke: eager and graphs through the eager recorder."""
    from ttt_video.sampling.graphs import (
        GraphedModel,
        cuda_graph_recorder,
        eager_recorder,
    )

    cfg = build_config(s.preset, ssm_layer="ttt_mlp")
    rate = matmul_rate(s)
    out.update(
        preset=s.preset,
        dtype=str(s.dtype),
        mini_batch=cfg.mini_batch_size,
        matmul_tflops=rate / 1e12,
        rows=[],
    )
    model = random_dit(cfg, s.device, s.dtype)
    graphed = GraphedModel(
        model, eager_recorder if s.smoke else cuda_graph_recorder(), s.device
    )
    variants = {
        "eager": ("eager", model),
        "triton": ("triton", model),
        "graphs": ("eager" if s.smoke else "triton", graphed),
    }
    if s.smoke:
        variants.pop("triton")
        out.update(
            note="CPU: no Triton row; 'graphs' is the same wrapper with the eager recorder"
        )
    for seconds in (3, 9):
        layout, inputs = video_inputs(cfg, s, seconds)
        flops = sum(bench_dit.forward_flops(cfg, layout).values())
        for variant, (kernel, fn) in variants.items():
            set_ttt_kernel(model, kernel)
            repeats = 1 if variant == "eager" and not s.smoke else 3
            times = timed(
                lambda fn=fn, x=inputs: fn(*x), s.device, warmup=1, repeats=repeats
            )
            ms = statistics.median(times) * 1e3
            row = {
                "seconds": seconds,
                "variant": variant,
                "tokens": layout.num_tokens,
                "gflop": flops / 1e9,
                "ms": ms,
            }
            row.update(
                floor_ms=flops / rate * 1e3,
                x_floor=ms / (flops / rate * 1e3),
                tflops=flops / (ms / 1e3) / 1e12,
            )
            out.update(rows=[*out["rows"], row])
        graphed.release()


def forward_seconds(cfg, s: Settings, lengths: tuple[int, ...], record) -> None:
    """``record(length, seconds)`` of one forward (batch 1) of a random ``cfg`` DiT per length; one warm-up
    before the first length only (Triton's compilation and the libraries' set-up happen once)."""
    model = random_dit(cfg, s.device, s.dtype)
    for k, length in enumerate(lengths):
        _, inputs = video_inputs(cfg, s, length)
        times = timed(
            lambda m=model, x=inputs: m(*x), s.device, warmup=int(k == 0), repeats=1
        )
        record(length, times[0])
        del inputs
    del model
    free(s.device)


def item_ttt_vs_none(s: Settings, out: Result) -> None:
    """Forward time (batch 1) of TTT-MLP (the scan ``auto`` picks) against ``none`` at 18 s and 63 s."""
    lengths = (18, 63)
    out.update(
        preset=s.preset,
        dtype=str(s.dtype),
        target="ratio <= 1.5 at 63 s on a GPU (the paper: 2.5)",
    )
    rows = {length: {"seconds": length} for length in lengths}

    def record(ssm: str):
        def write(length: int, seconds: float) -> None:
            row = rows[length]
            row[f"{ssm}_ms"] = seconds * 1e3
            if "ttt_mlp_ms" in row and "none_ms" in row:
                row["ratio"] = row["ttt_mlp_ms"] / row["none_ms"]
            out.update(rows=list(rows.values()))

        return write

    for ssm in ("ttt_mlp", "none"):
        forward_seconds(build_config(s.preset, ssm_layer=ssm), s, lengths, record(ssm))


def item_peak_memory(s: Settings, out: Result) -> None:
    """One denoising step of a 63 s TTT-MLP video as the sampler runs it (both guidance branches as one
    batch, CUDA graphs as ``eval.cuda_graphs = "auto"`` chooses): peak allocated and reserved memory."""
    from ttt_video.sampling import guided_denoiser, step_table
    from ttt_video.sampling.graphs import GraphedModel, cuda_graph_recorder

    cfg = build_config(s.preset, ssm_layer="ttt_mlp")
    model = random_dit(cfg, s.device, s.dtype)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / GIB
    layout, (latents, text, _) = video_inputs(cfg, s, 63)
    velocity = (
        model if s.smoke else GraphedModel(model, cuda_graph_recorder(), s.device)
    )
    table = step_table(50)
    out.update(
        preset=s.preset,
        tokens=layout.num_tokens,
        weights_gib=weights,
        cuda_graphs=not s.smoke,
    )
    denoise = guided_denoiser(
        velocity,
        text,
        torch.zeros_like(text),
        table,
        model_dtype=s.dtype,
        cfg_batch=True,
    )
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with torch.inference_mode():
        x0 = denoise(latents.float(), table[0].a, table[0].model_timestep, 0)
        synchronize(s.device)
    out.update(
        step_seconds=time.perf_counter() - started,
        finite=bool(torch.isfinite(x0).all()),
    )
    if s.device.type == "cuda":
        reserved = torch.cuda.max_memory_reserved() / GIB
        out.update(
            peak_allocated_gib=torch.cuda.max_memory_allocated() / GIB,
            peak_reserved_gib=reserved,
        )
        out.update(
            fits_80gb=reserved <= H100_80GB_USABLE_GIB, limit_gib=H100_80GB_USABLE_GIB
        )
    else:
        import resource

        out.update(
            peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
        )


def item_e2e(s: Settings, out: Result) -> None:
    from device_check.e2e import run_e2e

    run_e2e(s, out)


ITEMS = {
    "doctor": item_doctor,
    "cuda_tests": item_cuda_tests,
    "forward": item_forward,
    "ttt_vs_none": item_ttt_vs_none,
    "e2e": item_e2e,
    "peak_memory": item_peak_memory,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ITEMS:
        print(
            f"usage: python -m device_check.items {{{','.join(ITEMS)}}} RESULT.json [--smoke]",
            file=sys.stderr,
        )
        return 2
    settings = Settings.of("--smoke" in argv[2:])
    out = Result(Path(argv[1]))
    out.update(device=str(settings.device))
    ITEMS[argv[0]](settings, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
