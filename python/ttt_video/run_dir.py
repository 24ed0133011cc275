"""The run directory (contract 2): one folder per run, one sub-folder per video, files written atomically.

    <run>/config.toml  storyboards.jsonl  events.jsonl
    <run>/prompt-<k>/video.mp4  prompt.txt  meta.json

`meta.json` is written last, so a video folder with a `meta.json` is complete; a re-run skips it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .storyboard import Video, read_storyboard_file

CONFIG_NAME = "config.toml"
STORYBOARDS_NAME = "storyboards.jsonl"
EVENTS_NAME = "events.jsonl"


def write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


class RunDirectory:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"the run directory {self.path} does not exist")

    @property
    def events_file(self) -> Path:
        return self.path / EVENTS_NAME

    def video_dir(self, index: int) -> Path:
        return self.path / f"prompt-{index}"

    def video_file(self, index: int) -> Path:
        return self.video_dir(index) / "video.mp4"

    def is_complete(self, index: int) -> bool:
        return (self.video_dir(index) / "meta.json").is_file() and self.video_file(index).is_file()

    def storyboards(self, path: str | os.PathLike | None = None) -> list[Video]:
        return read_storyboard_file(path or self.path / STORYBOARDS_NAME)

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
        write_atomic(self.video_dir(index) / "prompt.txt", "\n\n".join(prompts))

    def write_meta(self, index: int, meta: dict[str, Any]) -> None:
        write_atomic(self.video_dir(index) / "meta.json", json.dumps(meta, indent=2) + "\n")
