"""scripts/device-check: its smoke mode (the tiny preset on a CPU, every item) writes a complete report, and
one failing or hanging item loses only its own result."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "device-check"
ITEM_NAMES = ["doctor", "cuda_tests", "forward", "ttt_vs_none", "e2e", "peak_memory"]


def device_check_module(monkeypatch):
    """scripts/device-check (a script without .py) as a module."""
    loader = importlib.machinery.SourceFileLoader("device_check_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader("device_check_script", loader)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "device_check_script", module)  # dataclasses look their module up
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts scripts/ on it
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, dict, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("device-check")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    return out, json.loads((out / "report.json").read_text()), done


def test_smoke_runs_every_item_and_succeeds(smoke):
    out, report, done = smoke
    assert done.returncode == 0, (done.stdout, (out / "device-check.log").read_text()[-4000:])
    assert report["schema"] == "ttt-video-device-check/1" and report["mode"] == "smoke"
    assert report["started"] <= report["finished"]
    assert [item["name"] for item in report["items"]] == ITEM_NAMES
    for item in report["items"]:
        assert item["status"] == "ok", item
        assert 0 < item["seconds"] <= item["limit_seconds"]
        assert set(item) >= {"title", "reason", "result", "log_tail"}
    assert sorted(p.name for p in out.iterdir()) == ["device-check.log", "report.json", "report.md"]


def test_smoke_items_measured_what_they_name(smoke):
    _, report, _ = smoke
    items = {item["name"]: item["result"] for item in report["items"]}
    assert items["doctor"]["cuda_available"] is False and items["doctor"]["imports"]["torch"] is True
    collected = "\n".join(items["cuda_tests"]["collected"])
    for name in (
        "test_cuda.py::",
        "test_kernels.py::",
        "test_cuda_graph_replay_matches_eager",
        "test_cuda_runs_draw",
    ):
        assert name in collected
    forward = items["forward"]
    assert [(r["seconds"], r["variant"]) for r in forward["rows"]] == [
        (3, "eager"),
        (3, "graphs"),
        (9, "eager"),
        (9, "graphs"),
    ]
    assert all(r["ms"] > 0 and r["x_floor"] > 0 and r["tokens"] in (320, 912) for r in forward["rows"])
    rows = items["ttt_vs_none"]["rows"]
    assert [r["seconds"] for r in rows] == [18, 63]
    assert all(r["ratio"] == pytest.approx(r["ttt_mlp_ms"] / r["none_ms"]) and r["ratio"] > 1 for r in rows)
    e2e = items["e2e"]
    assert e2e["exit_code"] == 0 and e2e["steps"] == 2 and e2e["error"] is None and e2e["mp4_bytes"] > 0
    assert 0 < e2e["spawn_to_run_started"] < e2e["spawn_to_first_step"] < e2e["spawn_to_finished"]
    assert set(e2e["load_seconds"]) == {"transformer", "vae", "text_encoder"}
    memory = items["peak_memory"]
    assert memory["finite"] is True and memory["tokens"] == 6240 and memory["peak_rss_gib"] > 0


def test_markdown_report_has_a_section_per_item(smoke):
    out, report, _ = smoke
    text = (out / "report.md").read_text()
    for item in report["items"]:
        assert f"## {item['title']}" in text and f"| {item['name']} | ok |" in text
    assert "| 63 |" in text  # the TTT-MLP vs none table


def test_a_failing_and_a_hanging_item_lose_only_their_own_results(tmp_path, monkeypatch, capsys):
    """An item the items module does not know fails at once; a doctor given 0.5 s is stopped; both are
    reported, with the log of each, and the check goes on and exits 1."""
    module = device_check_module(monkeypatch)
    items = (
        module.Item("bogus", "Not an item", 30, 30),
        module.Item("doctor", "Environment (doctor)", 40, 0.5),
    )
    monkeypatch.setattr(module, "ITEMS", items)
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "python"))
    assert module.main([str(tmp_path), "--smoke"]) == 1
    report = json.loads((tmp_path / "report.json").read_text())
    bogus, doctor = report["items"]
    assert bogus["status"] == "failed" and "exit code 2" in bogus["reason"] and "usage" in bogus["log_tail"]
    assert doctor["status"] == "timeout" and doctor["seconds"] < 10
    assert report["finished"] and "bogus: failed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        module.parse_args([str(tmp_path), "--items", "doctor,nope"])
