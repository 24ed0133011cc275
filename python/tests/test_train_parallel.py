"""Training under torchrun (gloo, CPU) gives the parameters of one process, within 1e-6 after 3 steps.

Layouts: FSDP2 over 2 ranks and tensor parallelism over 2 here; HSDP 2 x 2 and TP 2 x FSDP 2 (4 ranks)
in test_train_hsdp.py and test_train_tp_fsdp.py; each with remat flags on and clipping active.

How one process sees what the ranks see together: a data-parallel rank ``r`` of ``W`` takes its clips
from the sampler (every ``W``-th entry) and its random draws from the generator of (job.seed, step,
``r``), with timesteps from its stratum of the grid. The reference is the same run in one process whose
``Trainer.next_batch`` returns the concatenation of the ``W`` ranks' batches (``MergedRanks``: it calls
the real batch code once per rank), so its global batch holds exactly the samples, timesteps, noise and
text dropout of the parallel run. The global batch mean of the loss then equals the mean over ranks of
their local means, which is what FSDP/HSDP's averaged gradients differentiate. Tensor-parallel peers share
one data-parallel rank, so the TP reference is a plain one-process run.

The learning rate is 1e-4: AdamW moves every parameter by about the learning rate whatever the size of
its gradient, so gradients that are rounding noise (``k_norm.bias``: attention is invariant to a bias on
the keys, its true gradient is zero) move by different ~lr-sized amounts in different summation orders.
Measured at lr 1e-3 (FSDP2): largest difference 2.4e-6, on ``layers.0.seq_modeling_block.k_norm.bias``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_loop import checkpoint_weights, events_of, write_bundle, write_dataset, write_run

from ttt_video.__main__ import main
from ttt_video.training import loop
from ttt_video.training.batches import Batch, draw_batch

HERE = Path(__file__).resolve().parent
STEPS = 3
REMAT_A = {"transformer_checkpoint_layer_group_size": 2, "attention": True, "mlp": True}
REMAT_B = {"forward_ssm": True, "reverse_ssm": True, "seq_modeling_block": True}
# name: (processes, parallelism, data-parallel ranks, global batch, remat, trainable set)
LAYOUTS = {
    "fsdp2": (2, {"dp_sharding": 2}, 2, 4, REMAT_A, "qkvo"),
    "tp2": (2, {"dp_sharding": 1, "tp_sharding": 2}, 1, 2, REMAT_B, "sft"),
    "hsdp2x2": (4, {"dp_replicate": 2, "dp_sharding": 2}, 4, 4, REMAT_B, "sft"),
    "tp2xfsdp2": (4, {"dp_sharding": 2, "tp_sharding": 2}, 2, 4, REMAT_A, "qkvo"),
}


class MergedRanks(loop.Trainer):
    """One process that trains on the union of the batches of ``layout_ranks`` data-parallel ranks."""

    layout_ranks = 1

    def next_batch(self) -> Batch:
        world = self.layout_ranks
        local = self.cfg.training.global_batch_size // world
        parts = []
        for rank in range(world):
            clips = [self.dataset.clips[i] for i in self.order.indices(rank, world, local)]
            parts.append(draw_batch(self.dataset, clips, self.cfg, self.step, rank, world))
        return Batch.concat(parts)


def torchrun(nproc: int, run: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd += ["-m", "ttt_video", "train", "--run-dir", str(run)]
    proc = subprocess.run(cmd, env=env, cwd=HERE.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inputs")
    return write_bundle(root / "bundle", seed=2), write_dataset(root / "data", clips=6, seed=3)


def layout_run(root: Path, inputs, name: str, parallel: bool) -> Path:
    _, parallelism, _, batch, remat, adapter = LAYOUTS[name]
    return write_run(
        root / ("parallel" if parallel else "reference"), *inputs,
        training={"global_batch_size": batch, "steps": STEPS, "adapter_method": adapter, "warmup_steps": 1},
        # the gradient norms are 0.09 to 0.15: clipping scales every step
        optimizer={"lr": 1e-4, "lr_ssm": 1e-4, "gradient_clipping_norm": 0.05},
        parallelism=parallelism if parallel else {"dp_sharding": 1},
        remat=remat,
    )  # fmt: skip


def reference_run(run: Path, dp_ranks: int, monkeypatch) -> None:
    monkeypatch.setattr(MergedRanks, "layout_ranks", dp_ranks)
    monkeypatch.setattr(loop, "Trainer", MergedRanks)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--run-dir", str(run)]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["fsdp2", "tp2"])
def test_parallel_training_matches_one_process(tmp_path, inputs, name, monkeypatch):
    check_layout(tmp_path, inputs, name, monkeypatch)


def check_layout(tmp_path: Path, inputs, name: str, monkeypatch) -> None:
    nproc, _, dp_ranks, _, _, adapter = LAYOUTS[name]
    parallel = layout_run(tmp_path, inputs, name, parallel=True)
    torchrun(nproc, parallel)
    reference = layout_run(tmp_path, inputs, name, parallel=False)
    reference_run(reference, dp_ranks, monkeypatch)

    got = checkpoint_weights(parallel / "checkpoints" / f"step-{STEPS}")
    want = checkpoint_weights(reference / "checkpoints" / f"step-{STEPS}")
    start = checkpoint_weights_of_bundle(inputs[0])
    worst = max(float((got[k] - want[k]).abs().max()) for k in want)
    assert worst <= 1e-6, f"{name}: largest parameter difference {worst:.3g}"
    moved = [k for k in want if not torch.equal(want[k], start[k])]
    assert len(moved) > len(want) // 3  # the comparison is not between untouched weights
    if adapter == "qkvo":  # frozen parameters stay frozen under FSDP
        assert all(".q." in k or ".k." in k or ".v." in k or ".o." in k or "norm" in k or "ttt" in k or "ssm" in k
                   for k in moved)  # fmt: skip

    events = events_of(parallel)
    steps = [e for e in events if e["type"] == "train.step"]
    reference_steps = [e for e in events_of(reference) if e["type"] == "train.step"]
    assert {e["rank"] for e in steps} == {0} and len(steps) == STEPS
    for mine, theirs in zip(steps, reference_steps, strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)  # averaged over the ranks
        assert mine["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-4)
    assert next(e for e in events if e["type"] == "run.started")["world_size"] == nproc


def checkpoint_weights_of_bundle(bundle: Path) -> dict[str, torch.Tensor]:
    from ttt_video.models import TTTVideoDiT

    return TTTVideoDiT.from_pretrained(bundle).state_dict()
