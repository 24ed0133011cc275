"""Training step speed and memory: seconds per step, tokens/s, peak memory, and the ratio to the FLOP floor.

    python scripts/bench_train.py                                   # tiny 3 s preset on the CPU
    python scripts/bench_train.py --preset ttt-mlp/3s --device cuda  # 5B at 3 s, bf16, remat as configured
    python scripts/bench_train.py --preset ttt-mlp/9s --device cuda --set training.global_batch_size=1

It runs the product's own training step (`training.step.train_step`: the loss, backward, clipping, AdamW
and the schedule) on one process with the preset's model, remat and adapter, random weights and a
synthetic batch of the preset's shapes (global_batch_size / grad_accum_steps samples at a time on one
process; set training.global_batch_size to fit). The FLOP floor is 3x the forward FLOPs (forward and
backward; remat recomputation not counted) at the measured matmul rate of the device, so "x floor" also
shows what remat costs. Peak memory: torch.cuda.max_memory_allocated on CUDA, the process's peak RSS on
the CPU.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_dit import forward_flops, measure_matmul_rate, synchronize
from ttt_video.contracts.config import load_config
from ttt_video.loading import DTYPES, dit_config_for_job
from ttt_video.models import TTTVideoDiT, build_config
from ttt_video.models.config import layout_of_inputs
from ttt_video.training.batches import Batch
from ttt_video.training.model_setup import TrainingModel
from ttt_video.training.optim import build_optimizer, build_scheduler
from ttt_video.training.remat import apply_remat
from ttt_video.training.step import train_step


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        default="tiny/3s",
        help="a training preset (configs/train/<preset>.toml)",
    )
    parser.add_argument(
        "--set", action="append", default=[], help="section.field=value over the preset"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--steps", type=int, default=5, help="timed steps (after one warm-up step)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--ssm-layers",
        default="none,ttt_mlp",
        help="the TTT layers to compare, side by side in one process",
    )
    return parser.parse_args()


def training_model(cfg, device: torch.device) -> TrainingModel:
    """The preset's DiT with random fp32 master weights, remat applied, in training mode."""
    config = dit_config_for_job(
        build_config(cfg.model.size, ssm_layer=cfg.model.ssm_layer), cfg
    )
    model = TTTVideoDiT.from_config(config, device=device, seed=0).train()
    apply_remat(model, cfg.remat)
    dtype = (
        DTYPES[cfg.parallelism.fsdp_unsharded_dtype]
        if device.type == "cuda"
        else torch.float32
    )
    return TrainingModel(model, dtype, dtype != torch.float32, device)


def synthetic_batch(cfg, model: TTTVideoDiT, size: int, device: torch.device) -> Batch:
    """``size`` samples of the preset's shapes: latents (B, T, C, h, w), text (B, n, L, D), indices, noise."""
    e, c = cfg.eval, model.config
    frames, n = e.sampling_num_frames, (e.sampling_num_frames - 1) // 12
    shape = (size, frames, c.in_channels, e.image_height // 8, e.image_width // 8)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(shape, generator=generator).to(device)
    text = torch.randn((size, n, e.txt_maxlen, c.text_dim), generator=generator).to(
        device
    )
    timesteps = torch.randint(0, 1000, (size,), generator=generator).to(device)
    noise = torch.randn(shape, generator=generator).to(device)
    return Batch(
        latents, text, timesteps, noise, tuple(f"synthetic-{i}" for i in range(size))
    )


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def time_steps(trained: TrainingModel, cfg, batch: Batch, steps: int) -> list[float]:
    """Seconds of each step after one warm-up step."""
    optimizer = build_optimizer(
        trained.model, cfg.optimizer, cfg.training.adapter_method or "sft"
    )
    scheduler = build_scheduler(optimizer, cfg.optimizer, cfg.training)
    seconds = []
    for step in range(1, steps + 2):
        synchronize(trained.device)
        start = time.perf_counter()
        train_step(trained, optimizer, scheduler, batch, cfg, step)
        synchronize(trained.device)
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def bench_row(cfg, device: torch.device, steps: int, rate: float) -> str:
    """One table row: the preset's training step with ``cfg``'s model (median of ``steps`` steps)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trained = training_model(cfg, device)
    size = cfg.training.global_batch_size
    batch = synthetic_batch(cfg, trained.model, size, device)
    shapes = (batch.latents.shape, batch.text.shape, batch.timesteps.shape)
    layout = layout_of_inputs(trained.model.config, *(tuple(s) for s in shapes))
    floor = 3 * sum(forward_flops(trained.model.config, layout, size).values()) / rate
    seconds = statistics.median(time_steps(trained, cfg, batch, steps))
    tokens = size * layout.num_tokens
    return (
        f"| {cfg.model.ssm_layer} | {size} | {layout.num_tokens} | {seconds:.3f} | {tokens / seconds:,.0f} "
        f"| {peak_memory_gib(device):.2f} | {floor:.3f} | {seconds / floor:.2f} |"
    )


def main() -> None:
    args = arguments()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # validated as a config, not as a run (a benchmark has no dataset)
    preset = ROOT / "configs" / "train" / f"{args.preset}.toml"
    configs = [
        load_config(preset, [*args.set, f"model.ssm_layer={layer}"])
        for layer in args.ssm_layers.split(",")
    ]
    dtype = (
        DTYPES[configs[0].parallelism.fsdp_unsharded_dtype]
        if device.type == "cuda"
        else torch.float32
    )
    rate = measure_matmul_rate(device, dtype, 8192 if device.type == "cuda" else 1024)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {args.threads} thread(s)"
    )
    print(
        f"# {args.preset} {' '.join(args.set)} on {name}, {dtype}; matmul {rate / 1e12:.3f} TFLOP/s"
    )
    print(
        f"# peak memory: {'per row' if device.type == 'cuda' else 'of the process so far (RSS)'}"
    )
    print(
        "| ssm_layer | batch | tokens/sample | s/step | tokens/s | peak GiB | floor s | x floor |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for cfg in configs:
        print(bench_row(cfg, device, args.steps, rate), flush=True)


if __name__ == "__main__":
    main()
