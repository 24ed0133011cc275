"""Sharded checkpoints: an FSDP2 run resumes on its layout bit for bit, and one process resumes from its
sharded checkpoint (DCP reshards) to the parameters of the FSDP run within 1e-6."""

from __future__ import annotations

import shutil

import torch
from test_train_loop import checkpoint_weights, events_of, write_run
from test_train_parallel import inputs, reference_run, torchrun  # noqa: F401 (inputs is a fixture)
from test_train_resume import optimizer_state

from ttt_video.training.checkpoints import MARKER

SECTIONS = {
    "training": {"global_batch_size": 4, "steps": 4, "warmup_steps": 1},
    "optimizer": {"lr": 1e-4, "lr_ssm": 1e-4, "gradient_clipping_norm": 0.05},
    "checkpoint": {"interval": 2},
}


def test_fsdp_checkpoints_resume_on_the_layout_and_in_one_process(tmp_path, inputs, monkeypatch):  # noqa: F811
    run = write_run(tmp_path / "fsdp", *inputs, parallelism={"dp_sharding": 2}, **SECTIONS)
    torchrun(2, run)
    final = run / "checkpoints" / "step-4"
    want, want_optimizer = checkpoint_weights(final), optimizer_state(final)
    assert len(list(final.glob("*.distcp"))) == 2  # one file per rank: sharded

    (final / MARKER).unlink()
    torchrun(2, run)
    assert [e["step"] for e in events_of(run) if e["type"] == "train.resumed"] == [2]
    got, got_optimizer = checkpoint_weights(final), optimizer_state(final)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert all(torch.equal(got_optimizer[k], want_optimizer[k]) for k in want_optimizer)

    single = write_run(tmp_path / "single", *inputs, parallelism={"dp_sharding": 1}, **SECTIONS)
    shutil.copytree(run / "checkpoints" / "step-2", single / "checkpoints" / "step-2")
    reference_run(single, 2, monkeypatch)  # one process, the two ranks' batches together
    assert [e["step"] for e in events_of(single) if e["type"] == "train.resumed"] == [2]
    resharded = checkpoint_weights(single / "checkpoints" / "step-4")
    worst = max(float((resharded[k] - want[k]).abs().max()) for k in want)
    assert worst <= 1e-6, worst
