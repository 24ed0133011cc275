"""prepare -> train -> export -> sample on the tiny bundle: the dataset that `prepare` writes, the shipped
tiny training preset (configs/train/tiny/3s.toml) and the research command line."""

from __future__ import annotations

import json

from conftest import ROOT
from prepare_helpers import make_run, one_segment_annotations, prepare
from test_train_loop import events_of

from ttt_video.__main__ import main


def test_prepared_clips_train_export_and_sample(tmp_path, tiny_bundle, single_thread):
    annotations = one_segment_annotations(tmp_path / "clips", 2)
    dataset = tmp_path / "dataset"
    assert prepare(make_run(tmp_path, tiny_bundle), annotations, dataset) == 0

    run = tmp_path / "train"
    preset = ROOT / "configs" / "train" / "tiny" / "3s.toml"
    flags = [
        f"--job.config_file={preset}", "--job.device=cpu", f"--checkpoint.model_dir={tiny_bundle}",
        f"--training.dataset_path={dataset}", "--training.steps=2", "--training.warmup_steps=1",
        "--training.global_batch_size=2",
    ]  # fmt: skip
    assert main(["train", "--run-dir", str(run), *flags]) == 0
    events = events_of(run)
    steps = [e for e in events if e["type"] == "train.step"]
    assert [e["step"] for e in steps] == [1, 2] and steps[0]["steps"] == 2
    final = [e for e in events if e["type"] == "checkpoint.written"][-1]
    assert final["final"] and final["path"] == str(run / "checkpoints" / "step-2")

    bundle = tmp_path / "bundle"
    assert main(["export", final["path"], str(bundle)]) == 0
    from test_pipeline import make_run as make_sample_run
    from test_pipeline import sample

    videos = [[{"text": "A grey square fades in."}]]
    sampled = make_sample_run(tmp_path, bundle, "3s", videos, eval={"num_denoising_steps": 1})
    assert sample(sampled) == 0
    meta = json.loads((sampled / "video-0" / "meta.json").read_text())
    assert meta["frames"] == 49
