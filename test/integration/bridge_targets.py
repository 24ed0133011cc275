"""Python functions the bridge tests call (test/integration/bridge*.test.ts)."""

import os
import time

LAST = {}


def nan_values():
    return {
        "nan": float("nan"),
        "inf": float("inf"),
        "list": [1.5, float("-inf")],
        "ok": 2.5,
    }


def fail(what):
    raise ValueError(f"bad value: {what}")


def steps(n, progress=None, sleep=0.0):
    LAST.clear()
    try:
        for i in range(n):
            if progress is not None:
                progress(
                    {"step": i, "total": n, "loss": float("nan") if i == 0 else i / n}
                )
            LAST["step"] = i
            time.sleep(sleep)
    except BaseException as e:
        LAST["error"] = type(e).__name__
        raise
    return n


def last():
    return LAST


def echo(**kwargs):
    return kwargs


def pid():
    return os.getpid()


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def die(code):
    os._exit(code)


def returns_bytes():
    return b"abc"


MARKS = []


def mark(tag):
    MARKS.append(tag)


def marks():
    return MARKS
