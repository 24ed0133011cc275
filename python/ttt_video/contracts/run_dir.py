"""A run directory (contract 2): names and meta.json fields come from ``generated`` (sdk/contracts/run-dir.ts).

    <run>/config.toml  storyboards.jsonl  events.jsonl
    <run>/video-<k>/video.mp4  prompt.txt  meta.json

Files are written atomically. ``meta.json`` is written last, so a video folder with one is complete; a re-run
skips it only when its recorded identity (storyboard and output-relevant config) is the one asked for now.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema

from .config import ConfigError, Issue, config_to_dict
from .generated import RESUME_FREE_FIELDS, RUN_FILES, VIDEO_DIR_PREFIX, VIDEO_FILES, VIDEO_META_SCHEMA
from .messages import format_value
from .storyboard import Video, read_storyboard_file, video_to_json


def write_atomic(path: Path, data: str | bytes) -> None:
    """Writes under a temporary name and renames; the file gets the umask's permissions."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def _is_free(path: str) -> bool:
    return any(path == f or (f.endswith(".*") and path.startswith(f[:-1])) for f in RESUME_FREE_FIELDS)


def config_differences(before: Any, after: Any) -> list[str]:
    """``section.field is X there and Y now`` for every field that differs and changes the outputs
    (the same as configDifferences of sdk/contracts/run-dir.ts)."""
    old, new = config_to_dict(before), config_to_dict(after)
    return [
        f"{section}.{name} is {format_value(old[section][name])} there and {format_value(value)} now"
        for section, values in new.items()
        for name, value in values.items()
        if not _is_free(f"{section}.{name}") and old[section][name] != value
    ]


def output_identity(cfg: Any, video: Video, model_fingerprint: str) -> dict[str, Any]:
    """What a video is made from: its storyboard, the model's weights and every config field that changes
    the output."""
    fields = {
        f"{section}.{name}": value
        for section, values in config_to_dict(cfg).items()
        for name, value in values.items()
        if not _is_free(f"{section}.{name}")
    }
    storyboard = json.dumps(video_to_json(video), sort_keys=True)
    return {"storyboard": storyboard, "model": model_fingerprint, "config": fields}


def identity_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``field is X there and Y now`` for every difference (the storyboard counts as one)."""
    out = []
    if before.get("storyboard") != after["storyboard"]:
        out.append("the storyboard differs")
    if before.get("model") != after["model"]:
        out.append("the model's weights differ")
    old = before.get("config", {})
    for path, value in after["config"].items():
        if old.get(path) != value:
            out.append(f"{path} is {format_value(old.get(path))} there and {format_value(value)} now")
    return out


class RunDirectory:
    def __init__(self, path: str | os.PathLike, create: bool = False):
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        if not self.path.is_dir():
            raise FileNotFoundError(f"the run directory {self.path} does not exist")

    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        return Path(path).is_dir()

    def file(self, name: str) -> Path:
        """A run-level file by its contract name: 'config', 'storyboards', 'events', 'checkpoints', ..."""
        return self.path / RUN_FILES[name]

    @property
    def events_file(self) -> Path:
        return self.file("events")

    def video_dir(self, index: int) -> Path:
        return self.path / f"{VIDEO_DIR_PREFIX}{index}"

    def video_file(self, index: int) -> Path:
        return self.video_dir(index) / VIDEO_FILES["video"]

    def read_meta(self, index: int) -> dict[str, Any] | None:
        meta = self.video_dir(index) / VIDEO_FILES["meta"]
        if not meta.is_file() or not self.video_file(index).is_file():
            return None
        return json.loads(meta.read_text(encoding="utf-8"))

    def finished(self, index: int, identity: dict[str, Any]) -> dict[str, Any] | None:
        """The meta.json of a complete video made from ``identity``; None when the video is not complete.

        A complete video made from something else is refused (ConfigError naming what differs): the
        folder must never hold a video that its config and storyboards do not describe.
        """
        meta = self.read_meta(index)
        if meta is None:
            return None
        differences = identity_differences(meta.get("identity", {}), identity)
        if differences:
            raise ConfigError(
                [
                    Issue(
                        "run_dir",
                        f"{self.video_dir(index)} holds a video made from other inputs ({'; '.join(differences)}); "
                        "use a new run directory, or delete this one",
                    )
                ]
            )
        return meta

    def storyboards(self, path: str | os.PathLike | None = None) -> list[Video]:
        return read_storyboard_file(path or self.file("storyboards"))

    def prepare_video(self, index: int) -> Path:
        """The video's folder, emptied of a previous unfinished attempt."""
        folder = self.video_dir(index)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            if stale.is_file():
                stale.unlink()
        return folder

    def write_prompt(self, index: int, prompts: list[str]) -> None:
        # The reference's prompt.txt: the segment prompts with scene tokens, joined by a blank line.
        write_atomic(self.video_dir(index) / VIDEO_FILES["prompts"], "\n\n".join(prompts))

    def write_meta(self, index: int, meta: dict[str, Any]) -> None:
        jsonschema.validate(meta, VIDEO_META_SCHEMA)
        write_atomic(self.video_dir(index) / VIDEO_FILES["meta"], json.dumps(meta, indent=2) + "\n")
