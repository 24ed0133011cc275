"""Writing demo-world datasets: one lossless mp4 per clip and an annotation JSONL, one clip a line.

Clips are H.264 in RGB (libx264rgb, qp 0, rgb24) in mp4: decoding gives back the rendered frames
exactly (max error 0). `annotations.jsonl` lines are `{"clip": "clips/000000.mp4", "segments": [{"text",
"requires_scene_transition", "neg_text": null}, ...]}`. CLI: `python -m ttt_video.demo.world --out DIR
--videos N --seed S [--segments 1,3] [--split all|train|heldout] [--overwrite]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .world import (
    DEFAULT_MIX,
    FPS,
    HEIGHT,
    MAX_SEGMENTS,
    SPLITS,
    WIDTH,
    Mix,
    parse_segment_range,
    render_video,
    sample_videos,
)

ANNOTATIONS = "annotations.jsonl"
CLIPS = "clips"


def write_clip(path: str | os.PathLike, frames: np.ndarray) -> Path:
    """Write `(F, 64, 96, 3)` uint8 RGB frames losslessly to an mp4 at 16 fps (via `<path>.partial`)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (HEIGHT, WIDTH, 3):
        raise ValueError(f"frames must be (F, {HEIGHT}, {WIDTH}, 3) uint8, got {frames.shape} {frames.dtype}")
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    container = av.open(str(partial), mode="w", format="mp4")
    try:
        stream = container.add_stream("libx264rgb", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "rgb24"
        stream.options = {"qp": "0", "preset": "veryfast"}
        for rgb in frames:
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"))
            )
        container.mux(stream.encode())
    except BaseException:
        container.close()
        partial.unlink(missing_ok=True)
        raise
    container.close()
    os.replace(partial, path)
    return path


def read_clip(path: str | os.PathLike) -> np.ndarray:
    """Decode a video file to `(F, H, W, 3)` uint8 RGB frames."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def write_dataset(
    out_dir: str | os.PathLike,
    num_videos: int,
    segments: int | tuple[int, int] = (1, MAX_SEGMENTS),
    seed: int = 0,
    split: str = "all",
    mix: Mix = DEFAULT_MIX,
    overwrite: bool = False,
) -> Path:
    """Render `sample_videos(num_videos, seed, segments, mix, split)` into `out_dir/clips/NNNNNN.mp4` and
    write `out_dir/annotations.jsonl` (written last, under a temporary name, so its presence means the
    dataset is complete). Returns the annotation file's path. Same arguments, same annotation bytes and
    same decoded frames. An existing `annotations.jsonl` is an error unless `overwrite`; with it, clips of
    an earlier, larger dataset that the new annotations do not name are left in place."""
    out_dir = Path(out_dir)
    annotations = out_dir / ANNOTATIONS
    if annotations.exists() and not overwrite:
        raise FileExistsError(
            f"{annotations} exists; choose another folder or pass overwrite=True (--overwrite)"
        )
    videos = sample_videos(num_videos, seed, segments, mix, split)
    (out_dir / CLIPS).mkdir(parents=True, exist_ok=True)
    lines = []
    for index, video in enumerate(videos):
        clip = f"{CLIPS}/{index:06d}.mp4"
        write_clip(out_dir / clip, render_video(video))
        lines.append(json.dumps({"clip": clip, "segments": video.storyboard()}) + "\n")
    partial = annotations.with_name(ANNOTATIONS + ".partial")
    partial.write_text("".join(lines), encoding="utf-8")
    os.replace(partial, annotations)
    return annotations


def _segment_range(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
        return parse_segment_range(parts[0] if len(parts) == 1 else tuple(parts))
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a count (3) or an inclusive range lo,hi (1,3) within 1..{MAX_SEGMENTS}"
        ) from e


def main(argv: list[str] | None = None) -> int:
    """CLI: write a demo-world dataset and print where it went."""
    parser = argparse.ArgumentParser(
        prog="python -m ttt_video.demo.world", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", required=True, help="output folder (clips/ and annotations.jsonl)")
    parser.add_argument("--videos", required=True, type=int, help="number of clips")
    parser.add_argument("--seed", required=True, type=int, help="non-negative seed")
    parser.add_argument(
        "--segments",
        type=_segment_range,
        default=(1, MAX_SEGMENTS),
        help=f"segments per clip: a count or an inclusive range lo,hi (default 1,{MAX_SEGMENTS})",
    )
    parser.add_argument("--split", choices=list(SPLITS), default="all", help="combinations to draw from")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    args = parser.parse_args(argv)
    try:
        path = write_dataset(
            args.out, args.videos, args.segments, args.seed, args.split, overwrite=args.overwrite
        )
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.videos} clips and {path}")
    return 0
