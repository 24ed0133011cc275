"""Checkpoints and auto-resume: a killed run resumes to the bit-identical parameters of an uninterrupted run;
a truncated checkpoint (no marker, or a file cut) is ignored with a warning; ``checkpoint.keep``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train_loop import checkpoint_weights, events_of, write_bundle, write_dataset, write_run

from ttt_video.__main__ import main
from ttt_video.training.checkpoints import MARKER, scan_checkpoints

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inputs")
    return write_bundle(root / "bundle", seed=4), write_dataset(root / "data", clips=5, seed=6)


def train(run: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed subprocess (OMP_NUM_THREADS=1): the same summation order
    try:
        assert main(["train", "--run-dir", str(run)]) == 0
    finally:
        torch.set_num_threads(threads)


def optimizer_state(folder: Path) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint import FileSystemReader

    stored = FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    import torch.distributed.checkpoint as dcp

    state = {
        key: torch.empty(meta.size, dtype=meta.properties.dtype)
        for key, meta in stored.items()
        if key.startswith("optimizer.")
    }
    dcp.load(state, checkpoint_id=str(folder), no_dist=True)
    return state


def kill_after_first_checkpoint(run: Path) -> int:
    """Starts the run as a process and SIGKILLs it once a checkpoint has been written; returns its step."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ttt_video", "train", "--run-dir", str(run)]
    proc = subprocess.Popen(cmd, env=env, cwd=HERE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    events = run / "events.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            lines = events.read_text().splitlines() if events.is_file() else []
            written = [json.loads(x) for x in lines if '"checkpoint.written"' in x]
            if written:
                proc.kill()
                proc.wait()
                return written[0]["step"]
            time.sleep(0.02)
    finally:
        proc.kill()
    raise AssertionError(f"no checkpoint was written: {proc.stderr.read().decode()[-3000:]}")


def test_killed_run_resumes_to_the_uninterrupted_parameters_bit_for_bit(tmp_path, inputs, single_thread):
    # bit for bit by construction: every part of both runs computes with one thread (the killed run's
    # process is started with OMP_NUM_THREADS=1), so sums are taken in the same order
    sections = {"training": {"steps": 12, "text_dropout": 0.5}, "checkpoint": {"interval": 2}}
    killed = write_run(tmp_path / "killed", *inputs, **sections)
    first = kill_after_first_checkpoint(killed)
    assert first == 2
    done = scan_checkpoints(killed / "checkpoints").complete
    assert done and done[-1][0] < 12  # killed before the end

    train(killed)  # the same run directory: resumes
    resumed = [e for e in events_of(killed) if e["type"] == "train.resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] == done[-1][0]

    uninterrupted = write_run(tmp_path / "uninterrupted", *inputs, **sections)
    train(uninterrupted)
    got = checkpoint_weights(killed / "checkpoints" / "step-12")
    want = checkpoint_weights(uninterrupted / "checkpoints" / "step-12")
    assert all(torch.equal(got[k], want[k]) for k in want)
    got_opt = optimizer_state(killed / "checkpoints" / "step-12")
    want_opt = optimizer_state(uninterrupted / "checkpoints" / "step-12")
    assert got_opt.keys() == want_opt.keys() and all(torch.equal(got_opt[k], want_opt[k]) for k in want_opt)
    # the steps after the resume report the losses of the uninterrupted run
    losses = {e["step"]: e["loss"] for e in events_of(killed) if e["type"] == "train.step"}
    reference = {e["step"]: e["loss"] for e in events_of(uninterrupted) if e["type"] == "train.step"}
    assert losses == reference


@pytest.mark.parametrize("damage", ["marker", "cut"])
def test_truncated_checkpoint_is_ignored_with_a_warning(tmp_path, inputs, damage):
    run = write_run(tmp_path / "run", *inputs, training={"steps": 4}, checkpoint={"interval": 2})
    train(run)
    final = run / "checkpoints" / "step-4"
    want = checkpoint_weights(final)
    if damage == "marker":
        (final / MARKER).unlink()
    else:
        data = max((p for p in final.iterdir() if p.suffix == ".distcp"), key=lambda p: p.stat().st_size)
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert [step for step, _ in scan_checkpoints(run / "checkpoints").complete] == [2]

    train(run)
    events = events_of(run)
    warnings = [e for e in events if e["type"] == "warning" and e.get("path") == str(final)]
    assert len(warnings) == 1
    assert ("no COMPLETE marker" if damage == "marker" else "(cut)") in warnings[0]["message"]
    assert [e["step"] for e in events if e["type"] == "train.resumed"] == [2]
    got = checkpoint_weights(final)  # steps 3 and 4 again, written anew
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_keep_leaves_the_newest_checkpoints(tmp_path, inputs):
    run = write_run(tmp_path / "run", *inputs, training={"steps": 3}, checkpoint={"interval": 1, "keep": 2})
    train(run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-3"]
    written = [e["step"] for e in events_of(run) if e["type"] == "checkpoint.written"]
    assert written == [1, 2, 3]


def test_a_finished_run_started_again_trains_nothing(tmp_path, inputs):
    run = write_run(tmp_path / "run", *inputs, training={"steps": 2})
    train(run)
    before = (run / "checkpoints" / "step-2" / MARKER).read_text()
    train(run)
    events = events_of(run)
    assert [e["step"] for e in events if e["type"] == "train.resumed"] == [2]
    assert len([e for e in events if e["type"] == "train.step"]) == 2
    assert (run / "checkpoints" / "step-2" / MARKER).read_text() == before
    assert (run / "loss.svg").is_file()


def test_resuming_with_another_trainable_set_is_a_config_error(tmp_path, inputs):
    run = write_run(tmp_path / "run", *inputs, training={"steps": 2, "adapter_method": "ttt"})
    train(run)
    # training.* may change on resume, but the AdamW state of the other parameters does not exist
    write_run(run, *inputs, training={"steps": 3, "adapter_method": "sft"})
    assert main(["train", "--run-dir", str(run)]) == 1
    error = events_of(run)[-1]
    assert error["code"] == "CONFIG" and error["issues"][0]["path"] == "training.adapter_method"
    assert "written with another trainable set" in error["message"]
