"""Plain image analysis of demo-world videos (no learning): per segment the background, the object's colour,
shape and motion, and the scene-cut frames of a whole video.

Every pixel is first given the nearest of the 12 palette colours (Euclidean RGB); colours come from
those labels, the object's mask from a two-colour decision (object colour vs background colour), and
per-frame results are pooled over a segment by majority vote or least squares, so a blurry, noisy
generated video is read the same way as the exact ground truth. Thresholds are the module's constants,
documented in docs/demo-world.md.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from .world import (
    BACKGROUND_COLOURS,
    HEIGHT,
    OBJECT_COLOURS,
    SHAPES,
    STILL,
    WIDTH,
    segment_bounds,
    shape_mask,
    video_frames,
)

PALETTE_NAMES = (*OBJECT_COLOURS, *BACKGROUND_COLOURS)  # labels 0..5 objects, 6..11 backgrounds
PALETTE = np.array([*OBJECT_COLOURS.values(), *BACKGROUND_COLOURS.values()], dtype=np.int64)
NUM_OBJECT_COLOURS = len(OBJECT_COLOURS)
MIN_OBJECT_PIXELS = 30  # fewer object-coloured pixels in a frame: no object in that frame
STILL_SPEED = 0.3  # px/frame; a centroid slower than this on both axes "stays still"
CUT_TOLERANCE = 3  # frames; also trimmed from each side of an inner segment boundary before pooling
SPIKE_CHANGE = 20.0  # mean |frame_t - frame_t-1| over pixels and channels (0..255) that counts as a cut
SPIKE_RATIO = 4.0  # ... and at least this many times the video's median frame change
BACKGROUND_WINDOW = 5  # frames in the sliding majority that smooths the per-frame background
MEASURE_RADIUS = 16  # px around the mask's median pixel that count for shape measures (object: 18 px)


def check_frames(frames: np.ndarray, num_segments: int | None = None) -> None:
    """Raise a ValueError unless `frames` is `(F, 64, 96, 3)` uint8 with F = 48n + 1 for `num_segments`."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be a uint8 numpy array, got {type(frames).__name__} "
            f"{getattr(frames, 'dtype', '')}".rstrip()
        )
    if frames.ndim != 4 or frames.shape[1:] != (HEIGHT, WIDTH, 3) or len(frames) < 2:
        raise ValueError(f"frames must be (F >= 2, {HEIGHT}, {WIDTH}, 3) RGB, got {frames.shape}")
    if num_segments is not None and len(frames) != video_frames(num_segments):
        raise ValueError(
            f"a {num_segments}-segment video has {video_frames(num_segments)} frames (48n + 1), "
            f"got {len(frames)}; pass the frames of the whole video"
        )


def palette_labels(frames: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """`(F, H, W, 3)` uint8 -> `(F, H, W)` uint8 index into `PALETTE_NAMES` of each pixel's nearest colour
    (ties go to the lower index). |c|^2 - 2 p.c is computed in float32, exactly: every term is an
    integer below 2^24."""
    flat = frames.reshape(-1, 3).astype(np.float32)
    palette = PALETTE.astype(np.float32)
    norms = (palette**2).sum(1)
    labels = np.empty(len(flat), dtype=np.uint8)
    for i in range(0, len(flat), chunk):  # no (pixels, 12, 3) temporary
        labels[i : i + chunk] = np.argmin(norms - 2 * flat[i : i + chunk] @ palette.T, axis=1)
    return labels.reshape(frames.shape[:-1])


def _majority(values, size: int) -> int | None:
    """The most frequent of `values` (ints in 0..size-1; ties go to the lowest), None when empty."""
    values = np.asarray(values, dtype=np.int64)
    return int(np.bincount(values, minlength=size).argmax()) if values.size else None


class ObjectMeasures(NamedTuple):
    """Measures of one object's mask: area (px), two scale-free moments, centroid (px, pixel centres at
    +0.5).

    corners = E[dx^2 dy^2] / (E[dx^2] E[dy^2]) about the centroid: mass towards the corners of the
    enclosing square raises it (exact shapes after the majority filter: square 0.96, triangle 0.79,
    circle 0.64). skew = E[dy^3] / E[dy^2]^1.5 (y downwards): mass below the centroid makes it negative
    (upward triangle -0.51, circle and square 0)."""

    area: int
    corners: float
    skew: float
    cx: float
    cy: float


def _majority_filter(mask: np.ndarray) -> np.ndarray:
    """`(..., H, W)` bool -> same: a pixel is kept where at least 5 of the 9 pixels of its 3 x 3 neighbourhood are set: removes
    isolated noise and fills pinholes (the exact shapes lose only their sharpest corner pixels)."""
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)]).astype(np.int8)
    h, w = mask.shape[-2:]
    votes = sum(padded[..., i : i + h, j : j + w] for i in range(3) for j in range(3))
    return votes >= 5


def shape_measures(mask: np.ndarray) -> ObjectMeasures | None:
    """`ObjectMeasures` of a `(H, W)` bool mask after a 3 x 3 majority filter, counting only pixels within
    MEASURE_RADIUS px (per axis) of the mask's median pixel, so stray pixels elsewhere do not count;
    None below MIN_OBJECT_PIXELS."""
    ys, xs = np.nonzero(_majority_filter(mask))
    if len(ys) < MIN_OBJECT_PIXELS:
        return None
    near = (np.abs(ys - np.median(ys)) <= MEASURE_RADIUS) & (np.abs(xs - np.median(xs)) <= MEASURE_RADIUS)
    ys, xs = ys[near] + 0.5, xs[near] + 0.5
    if len(ys) < MIN_OBJECT_PIXELS:
        return None
    dx, dy = xs - xs.mean(), ys - ys.mean()
    vx, vy = (dx * dx).mean(), (dy * dy).mean()
    if vx == 0 or vy == 0:  # a line, not a shape
        return None
    corners = float((dx * dx * dy * dy).mean() / (vx * vy))
    return ObjectMeasures(
        len(ys), corners, float((dy**3).mean() / vy**1.5), float(xs.mean()), float(ys.mean())
    )


@functools.cache
def shape_prototypes() -> np.ndarray:
    """`(3, 2)` (corners, skew) of the exact rendered shapes, in `SHAPES` order."""
    return np.array([shape_measures(np.pad(shape_mask(shape), 2))[1:3] for shape in SHAPES])


def classify_shape(corners: float, skew: float) -> str:
    """The shape whose prototype (corners, skew) is nearest (Euclidean)."""
    distances = ((shape_prototypes() - np.array([corners, skew])) ** 2).sum(1)
    return SHAPES[int(distances.argmin())]


def classify_motion(vx: float, vy: float) -> str:
    """Centroid velocity (px/frame, y downwards) -> motion phrase: still below `STILL_SPEED` on both axes,
    else the direction of the faster axis."""
    if max(abs(vx), abs(vy)) < STILL_SPEED:
        return STILL
    if abs(vx) >= abs(vy):
        return "moves right" if vx > 0 else "moves left"
    return "moves down" if vy > 0 else "moves up"


def _slope(t: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of values over t."""
    t = t - t.mean()
    return float((t * (values - values.mean())).sum() / (t * t).sum())


def label_counts(labels: np.ndarray) -> np.ndarray:
    """`(F, 12)` pixels of each palette colour in each frame of `(F, H, W)` labels."""
    frame_index = np.arange(len(labels), dtype=np.int64)[:, None] * len(PALETTE_NAMES)
    flat = (frame_index + labels.reshape(len(labels), -1)).ravel()
    return np.bincount(flat, minlength=len(labels) * len(PALETTE_NAMES)).reshape(len(labels), -1)


def object_mask(frames: np.ndarray, colour: int, background: int) -> np.ndarray:
    """`(..., H, W)` bool: pixels of `(..., H, W, 3)` uint8 frames nearer palette colour `colour` than
    palette colour `background` (a two-colour decision, so a blurred rim splits at the half-way line
    instead of going to a third palette colour)."""
    pixels = frames.astype(np.int32)
    to_object = ((pixels - PALETTE[colour]) ** 2).sum(-1)
    return to_object < ((pixels - PALETTE[background]) ** 2).sum(-1)


def detect_segment(frames: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Detections from one segment's `(f, H, W, 3)` uint8 frames (`labels`: their `palette_labels`).

    background: majority over frames of each frame's most common background colour. colour: majority
    over frames of each frame's most common object colour after a 3 x 3 majority filter of each colour's
    pixels (frames with >= MIN_OBJECT_PIXELS of them).
    shape: majority of per-frame `classify_shape` on `object_mask`. motion: `classify_motion` of the
    least-squares centroid velocity. A detection is None where no frame shows an object."""
    labels = palette_labels(frames) if labels is None else labels
    counts = label_counts(labels)
    background = NUM_OBJECT_COLOURS + _majority(
        counts[:, NUM_OBJECT_COLOURS:].argmax(1), len(BACKGROUND_COLOURS)
    )
    # isolated pixels of an object colour (background noise) do not count
    object_counts = np.stack(
        [_majority_filter(labels == c).sum(axis=(1, 2)) for c in range(NUM_OBJECT_COLOURS)], axis=1
    )
    seen = object_counts.max(1) >= MIN_OBJECT_PIXELS
    colour = _majority(object_counts[seen].argmax(1), NUM_OBJECT_COLOURS)
    frame_ids = np.flatnonzero(seen) if colour is not None else np.zeros(0, dtype=np.int64)
    masks = object_mask(frames[frame_ids], colour, background) if len(frame_ids) else []
    measures = [(t, shape_measures(mask)) for t, mask in zip(frame_ids, masks, strict=True)]
    measures = [(t, m) for t, m in measures if m is not None]
    result = {
        "background": PALETTE_NAMES[background],
        "colour": None if colour is None else PALETTE_NAMES[colour],
        "shape": None,
        "motion": None,
        "object_frames": len(measures),
        "frames": len(labels),
        "shape_measures": None,  # medians over frames of (area, corners, skew)
        "velocity": None,  # (vx, vy) px/frame
    }
    if measures:
        t = np.array([t for t, _ in measures], dtype=np.float64)
        table = np.array([m for _, m in measures], dtype=np.float64)  # (frames, 5) ObjectMeasures
        shapes = [SHAPES.index(classify_shape(corners, skew)) for corners, skew in table[:, 1:3]]
        result.update(
            shape=SHAPES[_majority(shapes, len(SHAPES))],
            shape_measures=[float(x) for x in np.median(table[:, :3], axis=0)],
        )
    if len(measures) >= 3:
        vx, vy = _slope(t, table[:, 3]), _slope(t, table[:, 4])
        result.update(motion=classify_motion(vx, vy), velocity=[vx, vy])
    return result


def frame_backgrounds(labels: np.ndarray) -> np.ndarray:
    """`(F,)` palette index of each frame's most common background colour."""
    counts = label_counts(labels)
    return NUM_OBJECT_COLOURS + counts[:, NUM_OBJECT_COLOURS:].argmax(1)


def detect_cuts(frames: np.ndarray, labels: np.ndarray | None = None) -> list[int]:
    """Scene-cut frames (the first frame of each new scene) of `(F, 64, 96, 3)` uint8 frames.

    Candidates: (a) frames where the background, smoothed by a centred sliding majority of
    BACKGROUND_WINDOW frames, changes; (b) frames whose mean absolute change from the previous frame is a
    local maximum >= SPIKE_CHANGE and >= SPIKE_RATIO x the video's median change. Candidates within
    CUT_TOLERANCE frames of a cluster's first merge into one cut at the cluster's largest change."""
    check_frames(frames)
    labels = palette_labels(frames) if labels is None else labels
    background = frame_backgrounds(labels)
    half = BACKGROUND_WINDOW // 2
    smooth = [
        _majority(background[max(0, t - half) : t + half + 1], len(PALETTE_NAMES))
        for t in range(len(background))
    ]
    candidates = {t for t in range(1, len(smooth)) if smooth[t] != smooth[t - 1]}
    change = np.zeros(len(frames))
    change[1:] = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    padded = np.concatenate([change, [0.0]])
    floor = max(SPIKE_CHANGE, SPIKE_RATIO * float(np.median(change[1:])))
    candidates |= {
        t
        for t in range(1, len(frames))
        if change[t] >= floor and change[t] >= max(change[t - 1], padded[t + 1])
    }
    cuts: list[list[int]] = []
    for t in sorted(candidates):
        if cuts and t - cuts[-1][0] <= CUT_TOLERANCE:
            cuts[-1].append(t)
        else:
            cuts.append([t])
    return [max(cluster, key=lambda t: (change[t], -t)) for cluster in cuts]


def detect_video(frames: np.ndarray, num_segments: int) -> dict:
    """`{"segments": [detect_segment of each segment], "cuts": detect_cuts}` for a whole video.

    Each inner segment boundary trims CUT_TOLERANCE frames from both sides before pooling, so a cut a few
    frames off does not leak the neighbouring scene into a segment's detections."""
    check_frames(frames, num_segments)
    labels = palette_labels(frames)
    bounds = segment_bounds(num_segments)
    segments = []
    for k, (start, stop) in enumerate(bounds):
        lo = start + (CUT_TOLERANCE if k > 0 else 0)
        hi = stop - (CUT_TOLERANCE if k < num_segments - 1 else 0)
        segments.append(detect_segment(frames[lo:hi], labels[lo:hi]))
    return {"segments": segments, "cuts": detect_cuts(frames, labels)}
