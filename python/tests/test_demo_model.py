"""The shipped demo model (models/demo and its local-attention baseline): intact, small, and it draws the
background its first segment asks for, through the research-style `sample` command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ttt_video.demo.dataset import read_clip
from ttt_video.demo.detect import detect_video
from ttt_video.demo.manifest import MANIFEST, check_manifest, folder_bytes
from ttt_video.demo.score import expected_segments
from ttt_video.demo.world import BACKGROUND_COLOURS, MOTIONS, OBJECT_COLOURS, SHAPES

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = [ROOT / "models" / "demo", ROOT / "models" / "demo-baseline"]
STORYBOARDS = ROOT / "examples" / "storyboards" / "demo-9s.jsonl"


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_shipped_bundle_matches_its_manifest(bundle):
    assert check_manifest(bundle) == []
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert folder_bytes(bundle) < 20e6
    assert {"command", "date", "machine", "evaluation", "vae"} <= set(manifest)
    assert json.loads((bundle / "bundle.json").read_text())["ssm_layer"] == manifest["ssm_layer"]


def test_demo_storyboards_follow_the_world():
    """Every demo storyboard is in the world's sentences and keeps its rules (cuts change the shape and
    the background; a memory names a shape seen earlier; a continuation keeps the scene)."""
    lines = STORYBOARDS.read_text().splitlines()
    assert len(lines) >= 2
    kinds = set()
    for line in lines:
        segments = expected_segments(json.loads(line))
        for previous, segment in zip(segments, segments[1:], strict=False):
            kinds.add(segment["kind"])
            if segment["kind"] in ("cut", "memory"):
                assert (
                    segment["shape"] != previous["shape"] and segment["background"] != previous["background"]
                )
            if segment["kind"] == "continue":
                assert segment["colour"] == previous["colour"] and segment["motion"] != previous["motion"]
        for s in segments:
            assert s["colour"] in OBJECT_COLOURS and s["shape"] in SHAPES
            assert s["background"] in BACKGROUND_COLOURS and s["motion"] in MOTIONS
    assert {"cut", "memory", "continue"} <= kinds


def test_demo_model_draws_the_first_segment_as_asked(tmp_path):
    """One 3-second video from the shipped model: the detectors find the background, object colour, shape
    and motion the text asks for. (Over held-out storyboards the model gets the colour right in 82% of the
    segments and the shape in 56%, docs/benchmarks.md; this board gave a still yellow circle on navy with
    seeds 0, 1 and 2, with shape measures (corners 0.69 to 0.71, skew -0.01 to 0) nearest the circle's.)"""
    board = [{"text": "A yellow circle stays still on a navy background."}]
    (tmp_path / "board.json").write_text(json.dumps([board]))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "ttt_video", "sample", "--job.config_file", "configs/eval/demo/3s.toml"]
    command += [f"--checkpoint.model_dir={BUNDLES[0]}", f"--eval.input_file={tmp_path / 'board.json'}"]
    command += [f"--eval.output_dir={tmp_path / 'out'}", "--job.seed=0"]
    subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    (video,) = (tmp_path / "out").rglob("video.mp4")
    detected = detect_video(read_clip(video), 1)["segments"][0]
    assert (detected["background"], detected["colour"]) == ("navy", "yellow")
    assert (detected["shape"], detected["motion"]) == ("circle", "stays still")


def test_vae_reconstructions_are_scored_like_generated_videos():
    """`eval-demo.py --vae-only`: the exact held-out videos through the shipped VAE keep their backgrounds."""
    from ttt_video.demo.evaluate import score_vae_reconstructions

    result = score_vae_reconstructions(BUNDLES[0], 1, 2)
    assert result["summary"]["videos"] == 1 and result["summary"]["segments"] == 3
    assert result["summary"]["accuracy"]["background"] == 1.0
