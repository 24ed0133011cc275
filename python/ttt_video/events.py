"""The JSON-lines event protocol (contract 3), mirrored by sdk/launch/events.ts.

Every event is one JSON object on one line: `{"v": 1, "type": ..., "time": <unix seconds>, "rank": r,
...fields}`. The transport is the run directory's `events.jsonl`: a file survives torchrun (which does not
pass arbitrary file descriptors to its workers) and shared storage carries it across nodes; the launcher
follows it. Rank 0 emits the progress events; any rank may emit `error`. Each event is written with one
`write` to a file opened in append mode, so lines from several ranks never interleave.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, TextIO

SCHEMA_VERSION = 1

EVENT_TYPES = (
    "run.started",
    "model.loading",
    "model.loaded",
    "prompt.started",
    "prompt.skipped",
    "step",
    "decode.window",
    "video.written",
    "prompt.finished",
    "run.finished",
    "error",
)

ERROR_CODES = (
    "CONFIG",
    "STORYBOARD",
    "WEIGHTS_MISSING",
    "OUT_OF_MEMORY",
    "DISTRIBUTED",
    "CANCELLED",
    "INTERNAL",
)


def _clean(value: Any) -> Any:
    """NaN and infinities are not JSON; they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class EventWriter:
    """Appends events to a JSON-lines file (and optionally echoes them to a stream)."""

    def __init__(self, path: str | os.PathLike | None, rank: int = 0, echo: TextIO | None = None):
        self.path = Path(path) if path is not None else None
        self.rank = rank
        self.echo = echo
        self._fd: int | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}; known: {', '.join(EVENT_TYPES)}")
        if type == "error" and fields.get("code") not in ERROR_CODES:
            raise ValueError(f"error events need a code among {ERROR_CODES}, got {fields.get('code')!r}")
        event = {
            "v": SCHEMA_VERSION,
            "type": type,
            "time": round(time.time(), 3),
            "rank": self.rank,
            **_clean(fields),
        }
        line = json.dumps(event, ensure_ascii=False, allow_nan=False) + "\n"
        if self._fd is not None:
            os.write(self._fd, line.encode("utf-8"))
        if self.echo is not None:
            self.echo.write(line)
            self.echo.flush()
        return event

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StepTimer:
    """Elapsed time and ETA of a loop of known length, for `step` and `decode.window` events."""

    def __init__(self, total: int):
        self.total = total
        self.started = time.perf_counter()

    def progress(self, done: int) -> dict[str, float | None]:
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (self.total - done) if done > 0 else None
        return {"elapsed": round(elapsed, 3), "eta": None if eta is None else round(eta, 3)}
