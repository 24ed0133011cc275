"""Contact sheets of demo-world videos: one row per 3-second segment, frames evenly spaced inside it."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from .world import segment_bounds

GAP = 2  # px between tiles (and around the sheet), in `GAP_COLOUR`
GAP_COLOUR = (255, 255, 255)


def sheet_frames(num_segments: int, columns: int) -> list[list[int]]:
    """Per segment, `columns` frame numbers spread evenly over it, first and last frame included."""
    rows = []
    for start, stop in segment_bounds(num_segments):
        span = stop - 1 - start
        rows.append([start + round(j * span / max(1, columns - 1)) for j in range(columns)])
    return rows


def contact_sheet(frames: np.ndarray, num_segments: int, columns: int = 6, zoom: int = 2) -> np.ndarray:
    """`(H', W', 3)` uint8: a grid of `frames` `(48n + 1, h, w, 3)`, row k = segment k, each tile
    enlarged `zoom` times (nearest neighbour, so colours stay exact), `GAP` px apart."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    rows = sheet_frames(num_segments, columns)
    if rows[-1][-1] >= len(frames):
        raise ValueError(f"{num_segments} segments need {rows[-1][-1] + 1} frames, got {len(frames)}")
    h, w = frames.shape[1] * zoom, frames.shape[2] * zoom
    sheet = np.empty((GAP + len(rows) * (h + GAP), GAP + columns * (w + GAP), 3), dtype=np.uint8)
    sheet[:] = GAP_COLOUR
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            tile = frames[t].repeat(zoom, axis=0).repeat(zoom, axis=1)
            y, x = GAP + r * (h + GAP), GAP + c * (w + GAP)
            sheet[y : y + h, x : x + w] = tile
    return sheet


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an `(H, W, 3)` uint8 RGB image as a PNG (PyAV's png encoder); H and W must be even."""
    path = Path(path)
    with av.open(str(path), mode="w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "rgb24"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m ttt_video.demo.contact_sheet VIDEO OUT.png [--columns 6] [--zoom 2]`: one row per segment."""
    import argparse

    from .dataset import read_clip

    parser = argparse.ArgumentParser(description="contact sheet of a demo-world video, one row per segment")
    parser.add_argument("video", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--zoom", type=int, default=2)
    args = parser.parse_args(argv)
    frames = read_clip(args.video)
    if (len(frames) - 1) % 48:
        parser.error(f"{args.video} has {len(frames)} frames; a demo-world video has 48n + 1")
    write_png(args.out, contact_sheet(frames, (len(frames) - 1) // 48, args.columns, args.zoom))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
