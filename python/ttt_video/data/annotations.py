"""The annotation file of `prepare`: JSON lines, one clip a line, checked whole before any work starts.

    {"clip": "clips/000017.mp4", "segments": [{"text": ..., "requires_scene_transition"?: bool,
                                               "neg_text"?: str | null}, ...]}

Relative clip paths start at the annotation file's folder. One segment per 3 seconds of clip: a clip of
n segments lasts 3n s, within one frame at its own frame rate (48n + 1 frames at 16 fps are 3n s and a
frame). Blank lines are skipped; a clip's id is its line number. Every problem of every line is reported
at once, as one DataError whose issues carry the file, the line and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contracts.config import InputError, Issue, read_input_file
from ..contracts.storyboard import Video, check_segment, describe_value, parse_json
from .clips import ClipError, probe_clip

ANNOTATION_KEYS = ("clip", "segments")
SEGMENT_SECONDS = 3


class DataError(InputError):
    """Annotation lines or clips that cannot be used; ``issues`` name the file, line and field."""

    code = "DATA"


@dataclass(frozen=True)
class Annotation:
    line: int  # 1-based line of the annotation file
    clip: Path  # absolute (normalised, symlinks kept)
    segments: Video

    @property
    def id(self) -> str:
        """The clip's id in the dataset: its line number, zero-padded to 6 digits."""
        return f"{self.line:06d}"


def read_annotations(path: str | os.PathLike) -> list[Annotation]:
    """Every clip line of the file, each checked: JSON, keys, segments (the storyboard's checks), the clip
    (exists, decodes, lasts 3 s per segment, given once). Raises one DataError holding every problem."""
    file = Path(path)
    text = _read_text(file)
    issues: list[Issue] = []
    annotations: list[Annotation] = []
    seen: dict[Path, int] = {}
    for index, raw in enumerate(text.split("\n")):
        if not raw.strip():
            continue
        line_issues: list[Issue] = []
        annotation = _check_line(raw, index, file.parent, seen, line_issues)
        for issue in line_issues:
            issue.line, issue.file = index + 1, str(file)
        issues += line_issues
        if annotation is not None and not line_issues:
            annotations.append(annotation)
    if not issues and not annotations:
        issues.append(Issue("", "the annotation file holds no clip", file=str(file)))
    if issues:
        raise DataError(issues, file)
    return annotations


def _read_text(file: Path) -> str:
    def fail(message: str) -> DataError:
        return DataError([Issue("", message, file=str(file))], file)

    data = read_input_file(file, "an annotation file (JSON lines)", "the annotation file", fail)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            [Issue("", f"not valid UTF-8 (byte {e.start}); save the file as UTF-8", line, file=str(file))],
            file,
        ) from None


def _check_line(
    raw: str, index: int, folder: Path, seen: dict[Path, int], issues: list[Issue]
) -> Annotation | None:
    ok, value = parse_json(raw, index, issues)
    if not ok:
        return None
    if not isinstance(value, dict):
        message = f'must be an object {{"clip": ..., "segments": [...]}}, got {describe_value(value)}'
        issues.append(Issue("", message))
        return None
    for key in value:
        if key not in ANNOTATION_KEYS:
            issues.append(
                Issue(key, f'unknown key "{key}"; an annotation line has {", ".join(ANNOTATION_KEYS)}')
            )
    segments = _check_segments(value.get("segments"), "segments" in value, issues)
    clip = _check_clip(value.get("clip"), "clip" in value, folder, index + 1, seen, issues)
    if clip is not None:
        _check_clip_file(clip, len(segments) if segments is not None else None, issues)
    if clip is None or segments is None:
        return None
    return Annotation(index + 1, clip, segments)


def _check_segments(value: Any, given: bool, issues: list[Issue]) -> Video | None:
    if not given:
        issues.append(Issue("segments", 'is missing; give one {"text": ...} per 3 seconds of the clip'))
    elif not isinstance(value, list):
        issues.append(Issue("segments", f"must be an array of segment objects, got {describe_value(value)}"))
    elif not value:
        issues.append(Issue("segments", 'has no segment; give one {"text": ...} per 3 seconds of the clip'))
    else:
        return [check_segment(s, f"segments[{j}]", issues) for j, s in enumerate(value)]
    return None


def _check_clip(
    value: Any, given: bool, folder: Path, line: int, seen: dict[Path, int], issues: list[Issue]
) -> Path | None:
    if not given:
        issues.append(
            Issue("clip", "is missing; give the video file's path (relative to this file's folder)")
        )
        return None
    if not isinstance(value, str) or not value.strip():
        issues.append(Issue("clip", f"must be the video file's path, got {describe_value(value)}"))
        return None
    clip = Path(os.path.abspath(folder / value))
    if not clip.exists():
        issues.append(Issue("clip", f"{clip} does not exist (relative paths start at {folder})"))
        return None
    if not clip.is_file():
        issues.append(Issue("clip", f"{clip} is not a file"))
        return None
    if clip in seen:
        message = (
            f"{clip} is the clip of line {seen[clip]} too; give each clip once "
            "(a repeated clip would be trained on twice as often)"
        )
        issues.append(Issue("clip", message))
        return None
    seen[clip] = line
    return clip


def _check_clip_file(clip: Path, segments: int | None, issues: list[Issue]) -> None:
    try:
        info = probe_clip(clip)
    except ClipError as e:
        issues.append(Issue("clip", f"{clip} {e}"))
        return
    if segments is None:
        return
    expected = SEGMENT_SECONDS * segments
    if abs(info.duration - expected) <= 1 / info.fps:
        return
    seconds = float(info.duration)
    fits = round(seconds / SEGMENT_SECONDS)
    if fits >= 1 and abs(info.duration - SEGMENT_SECONDS * fits) <= 1 / info.fps:
        hint = f"give the line {fits} segment(s), or use a clip of {expected} s"
    elif seconds > SEGMENT_SECONDS:
        hint = f"cut the clip to a multiple of {SEGMENT_SECONDS} s, with one segment per {SEGMENT_SECONDS} s"
    else:
        hint = f"a clip needs at least {SEGMENT_SECONDS} s (one segment)"
    found = f"{clip} lasts {seconds:.3f} s ({info.frames} frames at {float(info.fps):g} fps)"
    need = f"{segments} segment(s), which need {expected} s (one per {SEGMENT_SECONDS} s, within one frame)"
    issues.append(Issue("clip", f"{found} but the line has {need}; {hint}"))
