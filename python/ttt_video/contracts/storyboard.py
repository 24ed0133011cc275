"""Storyboards (reference-spec 2): the same rules as sdk/contracts/storyboard.ts; the shared vectors in
test/vectors keep the two equal.

A storyboard file lists videos; a video is a list of 3-second segments
`{"text": str, "requires_scene_transition"?: bool, "neg_text"?: str | null}`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import InputError, Issue, read_input_file
from .generated import END_SCENE, SEGMENT_KEYS, START_SCENE


class StoryboardError(InputError):
    code = "STORYBOARD"


@dataclass(frozen=True)
class Segment:
    text: str
    requires_scene_transition: bool = False
    neg_text: str | None = None


@dataclass(frozen=True)
class SegmentPrompts:
    """The prompts of one video as fed to T5, one per segment."""

    prompts: list[str]
    negative_prompts: list[str]


Video = list[Segment]


def storyboard_format(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext in (".json", ".jsonl"):
        return ext[1:]
    raise StoryboardError(
        [
            Issue(
                "",
                f'unsupported extension "{ext or "(none)"}"; use .json (an array of videos) '
                "or .jsonl (one video per line)",
            )
        ],
        path,
    )


def read_storyboard_file(path: str | os.PathLike) -> list[Video]:
    fmt = storyboard_format(path)
    path = Path(path)
    data = read_input_file(
        path, "a storyboard file", "the storyboard", lambda m: StoryboardError([Issue("", m)], path)
    )
    return parse_storyboards(data, fmt, path)


def parse_storyboards(data: bytes | str, fmt: str, file: str | os.PathLike | None = None) -> list[Video]:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            prefix = data[: e.start].decode("utf-8", errors="replace").split("\n")
            raise StoryboardError(
                [
                    Issue(
                        "",
                        f"not valid UTF-8 (byte {e.start}); save the file as UTF-8",
                        len(prefix),
                        len(prefix[-1]) + 1,
                    )
                ],
                file,
            ) from None
        text = text.removeprefix("\ufeff")
    else:
        text = data
    if not text.strip():
        raise StoryboardError([Issue("", "the storyboard file is empty")], file)

    issues: list[Issue] = []
    videos: list[Video] = []
    if fmt == "json":
        ok, value = parse_json(text, 0, issues)
        if ok:
            if not isinstance(value, list):
                issues.append(
                    Issue("", "a .json storyboard must be an array of videos (each an array of segments)")
                )
            elif not value:
                issues.append(Issue("", "the storyboard holds no video"))
            else:
                videos = [_check_video(v, i, issues) for i, v in enumerate(value)]
    elif fmt == "jsonl":
        for line_index, line in enumerate(text.split("\n")):
            if not line.strip():
                continue
            ok, value = parse_json(line, line_index, issues)
            if ok:
                before = len(issues)
                videos.append(_check_video(value, len(videos), issues))
                for issue in issues[before:]:
                    issue.line = line_index + 1
            else:
                videos.append([])
        if not videos and not issues:
            issues.append(Issue("", "the storyboard holds no video"))
    else:
        raise ValueError(f"unknown storyboard format {fmt!r}; expected 'json' or 'jsonl'")
    if issues:
        raise StoryboardError(issues, file)
    return videos


def check_segment_counts(videos: list[Video], segments: int, file: str | os.PathLike | None = None) -> None:
    issues = [
        Issue(
            f"video[{i}]",
            f"has {len(video)} segment{'' if len(video) == 1 else 's'} but the config needs {segments} "
            f"(eval.sampling_num_frames = {12 * segments + 1} latent frames = {segments} x 3 s); "
            f"give each video {segments} segments or change the length preset",
        )
        for i, video in enumerate(videos)
        if len(video) != segments
    ]
    if issues:
        raise StoryboardError(issues, file)


def segment_prompts(video: Video) -> SegmentPrompts:
    """The T5 prompts of a video with the scene tokens inserted exactly as the reference does (spec 2.3)."""
    prompts = [s.text for s in video]
    for i, segment in enumerate(video):
        if i > 0 and segment.requires_scene_transition:
            prompts[i - 1] = prompts[i - 1] + END_SCENE
            prompts[i] = START_SCENE + prompts[i]
    return SegmentPrompts(prompts, [s.neg_text if s.neg_text is not None else "" for s in video])


def video_to_json(video: Video) -> list[dict[str, Any]]:
    out = []
    for s in video:
        item: dict[str, Any] = {"text": s.text}
        if s.requires_scene_transition:
            item["requires_scene_transition"] = True
        if s.neg_text is not None:
            item["neg_text"] = s.neg_text
        out.append(item)
    return out


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def parse_json(text: str, line_index: int, issues: list[Issue]) -> tuple[bool, Any]:
    """``(True, value)`` of JSON ``text`` that starts on line ``line_index + 1`` (0-based index), or
    ``(False, None)`` with an issue appended (invalid JSON or a key given twice, with its line)."""
    try:
        return True, json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        issues.append(Issue("", f"invalid JSON: {e.msg}", line_index + e.lineno, e.colno))
    except _DuplicateKey as e:
        line = line_index + 1 if line_index > 0 or "\n" not in text else None
        issues.append(Issue("", f'duplicate key "{e}" in an object; give each key once', line))
    return False, None


def _check_video(value: Any, index: int, issues: list[Issue]) -> Video:
    where = f"video[{index}]"
    if not isinstance(value, list):
        issues.append(Issue(where, f"must be an array of segment objects, got {describe_value(value)}"))
        return []
    if not value:
        issues.append(Issue(where, 'has no segment; a video needs at least one {"text": ...}'))
        return []
    return [check_segment(s, f"{where}.segment[{j}]", issues) for j, s in enumerate(value)]


def check_segment(value: Any, where: str, issues: list[Issue]) -> Segment:
    """The segment of a storyboard or annotation object; every problem is appended to ``issues`` with a
    path under ``where`` (a stand-in Segment is returned then)."""
    if not isinstance(value, dict):
        issues.append(Issue(where, f'must be an object like {{"text": "..."}}, got {describe_value(value)}'))
        return Segment("")
    for key in value:
        if key not in SEGMENT_KEYS:
            issues.append(
                Issue(f"{where}.{key}", f'unknown key "{key}"; a segment has {", ".join(SEGMENT_KEYS)}')
            )
    text = ""
    if "text" not in value:
        issues.append(Issue(f"{where}.text", "is missing; every segment needs a prompt"))
    elif not isinstance(value["text"], str):
        issues.append(Issue(f"{where}.text", f"must be a string, got {describe_value(value['text'])}"))
    elif not value["text"].strip():
        issues.append(Issue(f"{where}.text", "must not be empty"))
    else:
        text = value["text"]
        issues.extend(_text_issues(text, f"{where}.text"))
    transition = value.get("requires_scene_transition", False)
    if not isinstance(transition, bool):
        issues.append(
            Issue(
                f"{where}.requires_scene_transition",
                f"must be true or false, got {describe_value(transition)}",
            )
        )
        transition = False
    neg = value.get("neg_text")
    if neg is not None and not isinstance(neg, str):
        issues.append(Issue(f"{where}.neg_text", f"must be a string or null, got {describe_value(neg)}"))
        neg = None
    elif neg is not None:
        issues.extend(_text_issues(neg, f"{where}.neg_text"))
    return Segment(text, transition, neg)


def _text_issues(text: str, where: str) -> list[Issue]:
    """A prompt may not hold NUL characters or the scene tokens (which the storyboard's cuts insert)."""
    issues = []
    if "\x00" in text:
        issues.append(Issue(where, "contains a NUL character; remove it"))
    for token in (START_SCENE, END_SCENE):
        if token in text:
            issues.append(
                Issue(
                    where,
                    f"contains {token}; scene tokens are inserted from requires_scene_transition, remove it",
                )
            )
    return issues


def describe_value(value: Any) -> str:
    """A JSON value as messages name it: "null", "an array", "the string \"x\"", "number 3"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return f"the string {json.dumps(value if len(value) <= 40 else value[:40] + '...')}"
    return f"number {value}"
