"""Scoring a video against its demo-world storyboard: what each segment should show (read back from the
storyboard text), what the detectors see, and the accuracies. Pure functions returning plain dicts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from .detect import CUT_TOLERANCE, detect_video
from .world import BACKGROUND_COLOURS, MAX_SEGMENTS, MOTIONS, OBJECT_COLOURS, SHAPES, STILL, segment_bounds

ATTRIBUTES = ("background", "colour", "shape", "motion")

_COLOUR = "|".join(OBJECT_COLOURS)
_SHAPE = "|".join(SHAPES)
_BACKGROUND = "|".join(BACKGROUND_COLOURS)
_MOTION = "|".join(MOTIONS)
_OPEN = re.compile(rf"A ({_COLOUR}) ({_SHAPE}) ({_MOTION}) on a ({_BACKGROUND}) background\.")
_CONTINUE = re.compile(rf"The ({_COLOUR}) ({_SHAPE}) now ({_MOTION})\.")
_MEMORY = re.compile(rf"The ({_SHAPE}) comes back on a ({_BACKGROUND}) background\.")


def _segment_fields(segment, where: str) -> tuple[str, bool]:
    if isinstance(segment, Mapping):
        text, cut = segment.get("text"), segment.get("requires_scene_transition", False)
    else:  # ttt_video.storyboard.Segment or anything shaped like it
        text, cut = getattr(segment, "text", None), getattr(segment, "requires_scene_transition", False)
    if not isinstance(text, str) or not isinstance(cut, bool):
        raise ValueError(
            f"{where}: needs a string text and a boolean requires_scene_transition, got {segment!r}"
        )
    return text, cut


def _read_sentence(text: str, cut: bool, where: str, history: list[dict]) -> dict:
    """One segment's expectations from its sentence, given the segments before it."""
    if m := _OPEN.fullmatch(text):
        if history and not cut:
            raise ValueError(
                f"{where}: an 'A ...' sentence opens a scene, so it needs requires_scene_transition"
            )
        colour, shape, motion, background = m.groups()
        kind = "cut" if history else "first"
    elif m := _CONTINUE.fullmatch(text):
        colour, shape, motion = m.groups()
        previous = history[-1] if history else None
        if previous is None or cut or (colour, shape) != (previous["colour"], previous["shape"]):
            raise ValueError(
                f"{where}: 'The {colour} {shape} now ...' continues a scene, so it needs a previous "
                "segment with that object and no requires_scene_transition"
            )
        kind, background = "continue", previous["background"]
    elif m := _MEMORY.fullmatch(text):
        shape, background = m.groups()
        seen = [e["colour"] for e in history if e["shape"] == shape]
        if not cut or not seen:
            raise ValueError(
                f"{where}: 'The {shape} comes back ...' needs requires_scene_transition and the {shape} "
                "in an earlier segment"
            )
        kind, colour, motion = "memory", seen[-1], STILL  # the colour the shape had when last seen
    else:
        raise ValueError(f"{where}: {text!r} is not a demo-world sentence (see docs/demo-world.md)")
    return {
        "kind": kind,
        "background": background,
        "colour": colour,
        "shape": shape,
        "motion": motion,
        "requires_scene_transition": cut,
    }


def expected_segments(storyboard: Sequence) -> list[dict]:
    """What each segment of a demo-world storyboard must show.

    `storyboard`: segments as dicts `{"text", "requires_scene_transition"?, ...}` (or objects with those
    attributes). Returns per segment `{"kind", "background", "colour", "shape", "motion",
    "requires_scene_transition"}`; a memory segment's colour is the colour its shape had when last seen,
    its motion "stays still". Raises ValueError naming the segment for text outside the world's grammar
    and for storyboards that break its rules."""
    if not isinstance(storyboard, Sequence) or not 1 <= len(storyboard) <= MAX_SEGMENTS:
        raise ValueError(f"a demo-world storyboard has 1 to {MAX_SEGMENTS} segments, got {storyboard!r:.80}")
    expected: list[dict] = []
    for k, segment in enumerate(storyboard):
        where = f"segment[{k}]"
        text, cut = _segment_fields(segment, where)
        if k == 0 and cut:
            raise ValueError(f"{where}: the first segment must not require a scene transition")
        expected.append(_read_sentence(text, cut, where, expected))
    return expected


def _score_cuts(expected: list[dict], detected_cuts: list[int]) -> dict:
    starts = [start for start, _ in segment_bounds(len(expected))]
    boundaries, expected_cuts = (
        starts[1:],
        [starts[k] for k, e in enumerate(expected) if e["requires_scene_transition"]],
    )
    detected = []
    for frame in detected_cuts:
        nearest = min(boundaries, key=lambda b: (abs(frame - b), b)) if boundaries else None
        within = nearest is not None and abs(frame - nearest) <= CUT_TOLERANCE
        detected.append(
            {
                "frame": frame,
                "nearest_boundary": nearest,
                "within_tolerance": within,
                "expected": within and nearest in expected_cuts,
            }
        )
    found = [c for c in expected_cuts if any(abs(d - c) <= CUT_TOLERANCE for d in detected_cuts)]
    return {
        "expected_frames": expected_cuts,
        "detected": detected,
        "found": len(found),
        "missed": len(expected_cuts) - len(found),
        "spurious": sum(not d["expected"] for d in detected),
        "recall": len(found) / len(expected_cuts) if expected_cuts else None,
    }


def score_video(storyboard: Sequence, frames: np.ndarray) -> dict:
    """Detections vs expectations for one video: `frames` `(48n + 1, 64, 96, 3)` uint8, `storyboard` its
    n segments (see `expected_segments`).

    Returns `{"segments": [{"index", "start_frame", "expected", "detected", "correct"}], "accuracy":
    {attribute: fraction of segments}, "cuts": {...}, "memory_accuracy": fraction of memory segments
    whose object colour is right, or None without memory segments}`. A cut is a detected cut frame
    within CUT_TOLERANCE frames of a boundary whose segment requires a scene transition."""
    expected = expected_segments(storyboard)
    detections = detect_video(frames, len(expected))
    segments = []
    for k, ((start, _), exp, det) in enumerate(
        zip(segment_bounds(len(expected)), expected, detections["segments"], strict=True)
    ):
        correct = {a: det[a] == exp[a] for a in ATTRIBUTES}
        segments.append(
            {"index": k, "start_frame": start, "expected": exp, "detected": det, "correct": correct}
        )
    memory = [s["correct"]["colour"] for s in segments if s["expected"]["kind"] == "memory"]
    return {
        "segments": segments,
        "accuracy": {a: float(np.mean([s["correct"][a] for s in segments])) for a in ATTRIBUTES},
        "cuts": _score_cuts(expected, detections["cuts"]),
        "memory_accuracy": float(np.mean(memory)) if memory else None,
    }


def summarise_scores(scores: Sequence[Mapping]) -> dict:
    """Pool `score_video` results over videos: accuracies over all segments, cut recall over all expected
    cuts, spurious cuts counted, memory accuracy over all memory segments (None where there are none)."""
    segments = [s for score in scores for s in score["segments"]]
    memory = [s["correct"]["colour"] for s in segments if s["expected"]["kind"] == "memory"]
    expected_cuts = sum(len(score["cuts"]["expected_frames"]) for score in scores)
    found = sum(score["cuts"]["found"] for score in scores)
    return {
        "videos": len(scores),
        "segments": len(segments),
        "accuracy": {
            a: float(np.mean([s["correct"][a] for s in segments])) if segments else None for a in ATTRIBUTES
        },
        "cut_recall": found / expected_cuts if expected_cuts else None,
        "expected_cuts": expected_cuts,
        "spurious_cuts": sum(score["cuts"]["spurious"] for score in scores),
        "memory_segments": len(memory),
        "memory_accuracy": float(np.mean(memory)) if memory else None,
    }
