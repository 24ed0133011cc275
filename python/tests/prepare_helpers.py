"""Shared by the prepare tests: run directories as the TS side makes them, clips, reading the results."""

import json
import tomllib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from conftest import ROOT, write_config

from ttt_video.__main__ import main
from ttt_video.contracts.events import check_event
from ttt_video.demo.dataset import read_clip, write_clip


def make_run(tmp_path: Path, bundle: Path, **overrides) -> Path:
    """A run directory as the TS side prepares it: config.toml (the tiny 3 s preset + the bundle)."""
    run = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
    run.mkdir()
    config = tomllib.loads((ROOT / "configs" / "eval" / "tiny" / "3s.toml").read_text())
    config["checkpoint"] = {"model_dir": str(bundle)}
    write_config(run, config, **overrides)
    return run


def prepare(run: Path, annotations: Path, out: Path, *extra: str) -> int:
    return main(
        ["prepare", "--run-dir", str(run), "--annotations", str(annotations), "--out", str(out), *extra]
    )


def events_of(run: Path) -> list[dict]:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    for event in events:
        check_event(event)
    return events


def clip_events(run: Path) -> dict[int, str]:
    return {e["clip"]: e["status"] for e in events_of(run) if e["type"] == "prepare.clip"}


def manifest(out: Path) -> dict[str, dict]:
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return {entry["id"]: entry for entry in map(json.loads, lines)}


def expected_frames(path: Path) -> torch.Tensor:
    """A 16 fps clip of 48n + 1 frames at 96x64: the resample and resize rules give it back as it is."""
    rgb = torch.from_numpy(read_clip(path)).permute(3, 0, 1, 2).to(torch.float32)
    return ((rgb / 255) * 2 - 1)[None]


def write_rgb_clip(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Lossless RGB H.264 (decodes back exactly) at ``fps``, any even size."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264rgb", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        stream.options = {"qp": "0", "preset": "veryfast"}
        for rgb in frames:
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"))
            )
        container.mux(stream.encode())
    return path


def one_segment_annotations(folder: Path, count: int) -> Path:
    """``count`` 3 s clips (49 frames at 16 fps, frame k grey level 5k + clip) and their annotation file."""
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    lines = []
    for c in range(count):
        frames = np.broadcast_to(
            (np.arange(49) * 5 + c).astype(np.uint8)[:, None, None, None], (49, 64, 96, 3)
        )
        write_clip(folder / "clips" / f"{c}.mp4", frames)
        lines.append(json.dumps({"clip": f"clips/{c}.mp4", "segments": [{"text": f"clip number {c}"}]}))
    (folder / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "annotations.jsonl"
