"""Runs pytest on named tests from python/ and reads back the outcome of each (junit XML)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUTCOMES = ("passed", "failed", "error", "skipped")


def _outcome(case: ET.Element) -> tuple[str, str]:
    """("passed" | "failed" | "error" | "skipped", message) of one junit testcase."""
    for tag in ("failure", "error", "skipped"):
        found = case.find(tag)
        if found is not None:
            outcome = "failed" if tag == "failure" else tag
            return outcome, (found.get("message") or found.text or "")[:2000]
    return "passed", ""


def read_junit(path: Path) -> list[dict[str, Any]]:
    """One ``{id, outcome, seconds, message}`` per test case of a junit XML file."""
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = _outcome(case)
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        tests.append(
            {
                "id": test_id,
                "outcome": outcome,
                "seconds": float(case.get("time", 0)),
                "message": message,
            }
        )
    return tests


def run_pytest(targets: tuple[str, ...], *, collect_only: bool) -> dict[str, Any]:
    """pytest on ``targets`` (paths or node ids relative to python/). ``collect_only``: only collect, which
    fails when a named test no longer exists. The result's status is "failed" when pytest fails, and, in a
    real run, when any test was skipped (these tests skip only where there is no CUDA)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-o",
        "addopts=",
        "-q",
        "-p",
        "no:cacheprovider",
        *targets,
    ]
    with tempfile.TemporaryDirectory(prefix="device-check-pytest-") as tmp:
        xml = Path(tmp) / "junit.xml"
        command += ["--collect-only"] if collect_only else ["--junitxml", str(xml)]
        done = subprocess.run(
            command, cwd=ROOT / "python", capture_output=True, text=True, check=False
        )
        tests = read_junit(xml) if xml.is_file() else []
    output = (done.stdout + done.stderr)[-6000:]
    result: dict[str, Any] = {
        "command": " ".join(command[1:]),
        "exit_code": done.returncode,
        "output_tail": output,
    }
    if collect_only:
        collected = [line for line in done.stdout.splitlines() if "::" in line]
        result.update(collected=collected, counts={"collected": len(collected)})
        if done.returncode != 0 or not collected:
            result.update(
                status="failed", reason="pytest could not collect the named tests"
            )
        return result
    counts = {k: sum(t["outcome"] == k for t in tests) for k in OUTCOMES}
    result.update(tests=tests, counts=counts)
    if done.returncode != 0 or counts["skipped"] or not tests:
        reason = f"pytest exit code {done.returncode}: {counts}"
        result.update(
            status="failed",
            reason=reason
            + (
                " (a skipped test did not run on this GPU)" if counts["skipped"] else ""
            ),
        )
    return result
