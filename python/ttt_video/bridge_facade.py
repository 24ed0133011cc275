"""The Python half of the in-process bridge (`sdk/python/bridge/`, over pythonia).

The TypeScript side makes exactly one kind of call: `call(target, args_json, progress)`. `target` is a
dotted `module.function`, `args_json` a JSON object of keyword arguments, and the answer is always a JSON
string, `{"ok": true, "value": ...}` or `{"ok": false, "type", "message", "traceback", "code"}`. Nothing
else crosses the bridge: no proxies, no exceptions (pythonia's are hard to read in JS), and no NaN or
infinity (bare `NaN` in pythonia's IPC stream crashes Node's parser), which become `null`.

When the caller listens for progress, a target that takes a `progress` parameter gets a function to call
with one JSON-able event per step. It returns normally, or raises `Cancelled` once the caller has asked to
stop (its AbortSignal fired or its time ran out): cancellation is cooperative.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import PurePath
from typing import Any


class Cancelled(Exception):  # noqa: N818 (the name the TypeScript side and the users see)
    """The caller cancelled the call; raised from `progress(...)` inside the target."""

    code = "CANCELLED"


def clean(value: Any) -> Any:
    """A JSON-able copy of `value`: NaN/inf become None, tuples lists, paths strings, numpy scalars numbers."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [clean(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        return clean(item())
    tolist = getattr(value, "tolist", None)  # small numpy arrays / tensors
    if callable(tolist):
        return clean(tolist())
    raise TypeError(f"the bridge returns JSON only; cannot send a {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(clean(value), allow_nan=False)


def install_parent_death_signal() -> bool:
    """Die (SIGTERM) when the Node thread that spawned us dies, even in the middle of a call (Linux only)."""
    from .lifecycle import die_with_parent

    return die_with_parent()


def add_sys_path(paths: list[str]) -> list[str]:
    """Puts folders first on sys.path (where `call` targets are imported from); returns sys.path."""
    for p in reversed(paths):
        if p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)
    return list(sys.path)


def _resolve(target: str) -> Callable[..., Any]:
    module_name, _, func_name = target.rpartition(".")
    if not module_name or not func_name:
        raise ValueError(f"target must be 'module.function', got {target!r}")
    fn = getattr(importlib.import_module(module_name), func_name, None)
    if not callable(fn):
        raise AttributeError(f"module {module_name!r} has no function {func_name!r}")
    return fn


def _takes_progress(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "progress" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _progress_function(js_callback: Any) -> Callable[[Any], None]:
    def progress(event: Any = None) -> None:
        # The JS callback answers False once the caller wants to stop.
        if js_callback(dumps(event)) is False:
            raise Cancelled("cancelled by the caller")

    return progress


def _error(e: BaseException) -> str:
    code = getattr(e, "code", None)
    return json.dumps(
        {
            "ok": False,
            "type": type(e).__name__,
            "message": str(e),
            "traceback": traceback.format_exc(),
            "code": code if isinstance(code, str) else None,
        }
    )


def call(target: str, args_json: str = "{}", progress: Any = None) -> str:
    """Calls `target(**json.loads(args_json))` and answers JSON; never raises (except SystemExit)."""
    try:
        fn = _resolve(target)
        kwargs = json.loads(args_json)
        if not isinstance(kwargs, dict):
            raise TypeError("the arguments must be a JSON object")
        if progress is not None and _takes_progress(fn) and "progress" not in kwargs:
            kwargs["progress"] = _progress_function(progress)
        # Node's stdout may carry a program's output (JSON, a table); Python's prints go to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            value = fn(**kwargs)
        return json.dumps({"ok": True, "value": clean(value)}, allow_nan=False)
    except (Exception, KeyboardInterrupt) as e:
        return _error(e)
