"""The device check's report: report.json (the data) and report.md (the same, for people), rewritten after
every item so that a check stopped half way still leaves a report. Imports nothing heavy."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMA = "ttt-video-device-check/1"
STATUSES = ("pending", "ok", "failed", "timeout", "blocked", "skipped")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(out: Path, report: dict[str, Any]) -> None:
    write_atomic(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    write_atomic(out / "report.md", markdown(report))


def _num(x: Any, digits: int = 2) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(_num(row.get(c)) for c in columns) + " |" for row in rows
    ]
    return lines


def _doctor(r: dict[str, Any]) -> list[str]:
    doctor = r.get("doctor", {})
    gpu = r.get("gpu")
    lines = [
        f"- Python {doctor.get('python', {}).get('version')}, torch {r.get('torch')} (CUDA {r.get('cuda_version')})",
        f"- GPU: {gpu['name']}, {gpu['memory_gib']} GiB, {gpu['sms']} SMs"
        if gpu
        else "- GPU: none",
        "- imports: "
        + ", ".join(
            f"{m} {'yes' if ok else 'NO'}" for m, ok in r.get("imports", {}).items()
        ),
    ]
    return lines


def _tests(r: dict[str, Any]) -> list[str]:
    lines = [
        f"- `{r.get('command')}`: exit code {r.get('exit_code')}, {r.get('counts')}"
    ]
    for test in r.get("tests", []):
        if test["outcome"] != "passed":
            first = (test["message"].splitlines() or [""])[0]
            lines.append(f"- {test['outcome']}: `{test['id']}`: {first}")
    return lines


def _forward(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r.get('preset')} {r.get('dtype')}, matmul rate {_num(r.get('matmul_tflops'), 1)} TFLOP/s",
        "",
    ]
    return lines + table(
        r.get("rows", []),
        [
            "seconds",
            "variant",
            "tokens",
            "gflop",
            "ms",
            "floor_ms",
            "x_floor",
            "tflops",
        ],
    )


def _ttt_vs_none(r: dict[str, Any]) -> list[str]:
    return table(r.get("rows", []), ["seconds", "ttt_mlp_ms", "none_ms", "ratio"]) + [
        "",
        f"Target: {r.get('target')}",
    ]


def _key_values(r: dict[str, Any]) -> list[str]:
    skip = {
        "rows",
        "tests",
        "doctor",
        "nvidia_smi",
        "output_tail",
        "stderr_tail",
        "collected",
    }
    return [
        f"- {k}: {_num(v, 3) if not isinstance(v, dict | list) else json.dumps(v)}"
        for k, v in r.items()
        if k not in skip
    ]


FORMATS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "doctor": _doctor,
    "cuda_tests": _tests,
    "forward": _forward,
    "ttt_vs_none": _ttt_vs_none,
}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Device check ({report['mode']})", ""]
    lines += [
        f"- {k}: {report[k]}"
        for k in ("started", "finished", "host", "commit", "command")
        if k in report
    ]
    lines += ["", "| item | status | seconds | limit |", "|---|---|---|---|"]
    for item in report["items"]:
        lines.append(
            f"| {item['name']} | {item['status']} | {_num(item.get('seconds'), 1)} | {item['limit_seconds']} |"
        )
    for item in report["items"]:
        lines += ["", f"## {item['title']}", "", f"Status: **{item['status']}**"]
        if item.get("reason"):
            lines.append(f"({item['reason']})")
        result = item.get("result") or {}
        if result:
            lines += ["", *FORMATS.get(item["name"], _key_values)(result)]
        if item.get("log_tail") and item["status"] not in ("ok", "pending", "skipped"):
            lines += ["", "```", item["log_tail"].rstrip(), "```"]
    return "\n".join(lines) + "\n"
