"""The events of a run (contract 3): one JSON object per line of the run directory's events.jsonl.

The event types and their fields are defined in sdk/contracts/events.ts and generated into
``generated.EVENT_SCHEMAS``; every event is validated against its schema before it is written, so a
malformed event fails the run at its source. The transport is a file: it survives torchrun (which does
not pass arbitrary file descriptors to its workers) and shared storage carries it across nodes. Each
event is one ``write`` to a file opened in append mode, so lines from several ranks never interleave.
"""

from __future__ import annotations

import json
import math
import os
import time
from functools import cache
from pathlib import Path
from typing import Any, TextIO

import jsonschema

from .generated import ERROR_CODES, EVENT_SCHEMA_VERSION, EVENT_SCHEMAS

__all__ = ["ERROR_CODES", "EVENT_SCHEMA_VERSION", "EventWriter", "InvalidEventError"]


class InvalidEventError(ValueError):
    """An event that does not match its schema (a bug of the code that emits it)."""


def _clean(value: Any) -> Any:
    """NaN and infinities are not JSON; they become null. Paths become strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@cache
def _validator(event_type: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(EVENT_SCHEMAS[event_type])


def check_event(event: dict[str, Any]) -> None:
    """Raises InvalidEventError naming the first problem of ``event``."""
    event_type = event.get("type")
    if event_type not in EVENT_SCHEMAS:
        raise InvalidEventError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_SCHEMAS)}")
    error = next(iter(_validator(event_type).iter_errors(event)), None)
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "(event)"
        raise InvalidEventError(f"{event_type} event: {where}: {error.message}")


class EventWriter:
    """Appends validated events to a JSON-lines file (and optionally echoes them to a stream)."""

    def __init__(self, path: str | os.PathLike | None, rank: int = 0, echo: TextIO | None = None):
        self.path = Path(path) if path is not None else None
        self.rank = rank
        self.echo = echo
        self._fd: int | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        event = {"v": EVENT_SCHEMA_VERSION, "type": type, "time": round(time.time(), 3), "rank": self.rank}
        # An optional field given as None is left out; a required one stays null (eta, loss).
        required = set(EVENT_SCHEMAS.get(type, {}).get("required", []))
        event.update(_clean({k: v for k, v in fields.items() if v is not None or k in required}))
        check_event(event)
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
