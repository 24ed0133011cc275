"""`prepare` as a run: re-runs skip finished clips, a killed run leaves no partial file, two processes
write what one writes, and the research system's flags work."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from conftest import ROOT
from prepare_helpers import (
    clip_events,
    events_of,
    expected_frames,
    make_run,
    manifest,
    one_segment_annotations,
    prepare,
)
from safetensors.torch import load_file

import ttt_video
from ttt_video.__main__ import main
from ttt_video.data import DatasetFolder
from ttt_video.demo.dataset import write_dataset
from ttt_video.vae import CogVideoXVAE

PYTHON_DIR = Path(ttt_video.__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PYTHON_DIR), "PYTHONUNBUFFERED": "1"}


def tensor_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.safetensors"))}


def assert_same_tensors(a: Path, b: Path, atol: float = 0.0) -> None:
    entries = manifest(a)
    assert entries == manifest(b)
    for entry in entries.values():
        for x, y in zip(DatasetFolder(a).read_clip(entry), DatasetFolder(b).read_clip(entry), strict=True):
            torch.testing.assert_close(x, y, atol=atol, rtol=0)


def test_a_rerun_skips_finished_clips_and_encodes_new_lines(tmp_path, tiny_bundle):
    annotations = one_segment_annotations(tmp_path / "clips", 3)
    out = tmp_path / "dataset"
    assert prepare(make_run(tmp_path, tiny_bundle), annotations, out) == 0
    before = tensor_files(out)
    assert len(before) == 7 and "null_text.safetensors" in before  # 2 per clip and T5 of ""

    again = make_run(tmp_path, tiny_bundle)
    assert prepare(again, annotations, out) == 0
    assert clip_events(again) == {0: "skipped", 1: "skipped", 2: "skipped"}
    assert tensor_files(out) == before and len(manifest(out)) == 3

    one_segment_annotations(tmp_path / "clips", 4)  # the same three lines and a fourth
    more = make_run(tmp_path, tiny_bundle)
    assert prepare(more, annotations, out) == 0
    assert clip_events(more) == {0: "skipped", 1: "skipped", 2: "skipped", 3: "encoded"}
    assert sorted(manifest(out)) == ["000001", "000002", "000003", "000004"]
    assert {k: v for k, v in tensor_files(out).items() if "000004" not in k} == before


def test_a_rerun_with_other_settings_or_an_edited_line_is_refused(tmp_path, tiny_bundle):
    annotations = one_segment_annotations(tmp_path / "clips", 2)
    out = tmp_path / "dataset"
    assert prepare(make_run(tmp_path, tiny_bundle), annotations, out) == 0

    other = make_run(tmp_path, tiny_bundle, eval={"txt_maxlen": 24})
    assert prepare(other, annotations, out) == 1
    error = events_of(other)[-1]
    assert (
        error["code"] == "CONFIG" and "txt_maxlen (eval.txt_maxlen) is 8 there and 24 now" in error["message"]
    )
    window = make_run(tmp_path, tiny_bundle)
    assert prepare(window, annotations, out, "--window-frames", "16") == 1
    assert "window_frames (--window-frames) is 48 there and 16 now" in events_of(window)[-1]["message"]

    lines = annotations.read_text().splitlines()
    lines[1] = lines[1].replace("clip number 1", "another prompt")
    annotations.write_text("\n".join(lines) + "\n")
    edited = make_run(tmp_path, tiny_bundle)
    assert prepare(edited, annotations, out) == 1
    error = events_of(edited)[-1]
    assert error["code"] == "DATA" and [(i["line"], i["file"]) for i in error["issues"]] == [
        (2, str(annotations))
    ]
    assert "delete the line of id 000002 from manifest.jsonl" in error["message"]
    assert not [e for e in events_of(edited) if e["type"] == "prepare.clip"], "refused before any clip"


# A run killed (SIGKILL: nothing cleans up) right after clip 2's text file was written under its temporary
# name and before it was renamed: the worst moment for a truncated or unlisted file.
KILLED_RUN = """
import os, signal, sys
rename = os.replace
def replace(src, dst):
    if str(dst).endswith(os.path.join("text", "000002.safetensors")):
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(src, dst)
os.replace = replace
from ttt_video.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_leaves_no_partial_file_and_the_rerun_completes(tmp_path, tiny_bundle):
    annotations = one_segment_annotations(tmp_path / "clips", 3)
    out, killed = tmp_path / "dataset", make_run(tmp_path, tiny_bundle)
    args = ["prepare", "--run-dir", str(killed), "--annotations", str(annotations), "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, *args], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert list((out / "text").glob(".000002.safetensors.tmp-*")), "killed with the temporary file written"
    assert not (out / "text" / "000002.safetensors").exists()
    assert sorted(manifest(out)) == ["000001"], "only complete clips are listed"
    for file in out.rglob("[!.]*.safetensors"):
        load_file(str(file))  # every file under a final name is whole

    rerun = make_run(tmp_path, tiny_bundle)
    assert prepare(rerun, annotations, out) == 0
    assert clip_events(rerun) == {0: "skipped", 1: "encoded", 2: "encoded"}
    assert not list(out.rglob(".*tmp-*")), "the re-run removed the killed run's temporary files"
    clean = tmp_path / "clean"
    assert prepare(make_run(tmp_path, tiny_bundle), annotations, clean) == 0
    assert_same_tensors(out, clean, atol=1e-6)  # clip 1 came from another process: thread counts may differ


def test_two_processes_under_torchrun_write_the_same_dataset_as_one(tmp_path, tiny_bundle, single_thread):
    annotations = write_dataset(tmp_path / "demo", 4, segments=(1, 2), seed=5)
    one, two = tmp_path / "one", tmp_path / "two"
    assert prepare(make_run(tmp_path, tiny_bundle), annotations, one) == 0
    run = make_run(tmp_path, tiny_bundle, parallelism={"dp_sharding": 2})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += [
        "-m",
        "ttt_video",
        "prepare",
        "--run-dir",
        str(run),
        "--annotations",
        str(annotations),
        "--out",
        str(two),
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (two / "dataset.json").read_text() == (one / "dataset.json").read_text()
    assert_same_tensors(one, two)  # one thread per process on both sides: bit-equal
    events = events_of(run)
    assert {e["clip"]: e["rank"] for e in events if e["type"] == "prepare.clip"} == {0: 0, 1: 1, 2: 0, 3: 1}
    run_level = [e for e in events if e["type"] in ("run.started", "model.loaded", "warning", "run.finished")]
    assert run_level and {e["rank"] for e in run_level} == {0}
    assert [e["world_size"] for e in events if e["type"] == "run.started"] == [2]


def test_the_research_flags_take_the_annotations_from_the_config(tmp_path, tiny_bundle, monkeypatch):
    annotations = one_segment_annotations(tmp_path / "clips", 1)
    monkeypatch.chdir(tmp_path)
    flags = [
        "--job.config_file",
        str(ROOT / "configs" / "eval" / "tiny" / "3s.toml"),
        f"--checkpoint.model_dir={tiny_bundle}",
        f"--eval.input_file={annotations}",
        "--job.dump_folder=runs",
    ]
    assert main(["prepare", *flags, "--out", "dataset"]) == 0
    assert sorted(manifest(tmp_path / "dataset")) == ["000001"]
    (run,) = (tmp_path / "runs" / "tiny-3s").iterdir()
    assert (run / "config.toml").is_file() and events_of(run)[-1]["type"] == "run.finished"

    assert main(["prepare", *flags]) == 1  # no --out and no training.dataset_path
    (failed,) = (p for p in (tmp_path / "runs" / "tiny-3s").iterdir() if p != run)
    error = events_of(failed)[-1]
    assert error["code"] == "CONFIG" and error["issues"][0]["path"] == "training.dataset_path"
    assert json.loads((tmp_path / "dataset" / "dataset.json").read_text())["bundle"] == str(
        tiny_bundle.resolve()
    )


def test_the_frame_rate_must_give_whole_latent_frames_and_other_rates_are_warned_about(tmp_path, tiny_bundle):
    annotations = one_segment_annotations(tmp_path / "clips", 1)
    bad = make_run(tmp_path, tiny_bundle, eval={"sampling_fps": 10})  # 30 frames per segment: not 4k
    assert prepare(bad, annotations, tmp_path / "ten") == 1
    error = events_of(bad)[-1]
    assert error["code"] == "CONFIG" and error["issues"][0]["path"] == "eval.sampling_fps"

    slow = make_run(tmp_path, tiny_bundle, eval={"sampling_fps": 8})
    assert prepare(slow, annotations, tmp_path / "eight") == 0
    (entry,) = manifest(tmp_path / "eight").values()
    assert (entry["frames"], entry["latent_frames"]) == (25, 7)
    vae = CogVideoXVAE.from_pretrained(tiny_bundle / "vae", dtype=torch.float32, parts=("encoder",))
    frames = expected_frames(Path(entry["source"]))[:, :, ::2]  # 3 s at 8 fps: the even frames of 16 fps
    reference = vae.encode(frames, window=48)[0].permute(1, 0, 2, 3)
    moments, _ = DatasetFolder(tmp_path / "eight").read_clip(entry)
    torch.testing.assert_close(moments, reference, atol=1e-6, rtol=0)
    warnings = [e["message"] for e in events_of(slow) if e["type"] == "warning" and "path" not in e]
    assert warnings == [
        "eval.sampling_fps = 8 makes 6 latent frames per 3 s segment but the DiT's segments are 12 (16 fps); "
        "the dataset will not fit the model"
    ]
