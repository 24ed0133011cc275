"""Thread counts of CPU processes (lifecycle.py): the machine's cores shared by a node's processes."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from ttt_video.lifecycle import AUTO_ENV, THREADS_ENV, configure_threads, cpu_threads


def test_cores_are_shared_between_the_processes_of_a_node():
    assert [cpu_threads(n, cores=8) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


@pytest.mark.parametrize(
    ("environ", "launcher", "threads", "auto"),
    [
        ({}, False, 4, None),  # one process on 4 cores
        ({"LOCAL_WORLD_SIZE": "2"}, False, 2, None),  # a worker of two
        ({THREADS_ENV: "3"}, False, 3, None),  # the user's choice wins
        ({}, True, None, "1"),  # the launcher sets nothing but the marker
        ({THREADS_ENV: "3"}, True, None, None),  # ... and no marker when the user chose
        ({THREADS_ENV: "1", AUTO_ENV: "1", "LOCAL_WORLD_SIZE": "2"}, False, 2, "1"),  # torchrun's 1 replaced
    ],
)
def test_configure_threads(monkeypatch, environ, launcher, threads, auto):
    for name in (THREADS_ENV, AUTO_ENV, "LOCAL_WORLD_SIZE", "OMP_WAIT_POLICY"):
        # set, then delete: monkeypatch then restores what was there before, even what configure_threads
        # writes (a bare delenv of an absent variable records nothing, and the marker would leak into the
        # environment of every later subprocess)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    assert configure_threads(launcher=launcher) == threads
    assert os.environ.get(AUTO_ENV) == auto
    if threads is not None:
        assert os.environ[THREADS_ENV] == str(threads)


def test_torchrun_workers_share_the_cores_of_the_machine(tmp_path):
    """Two workers under `python -m ttt_video torchrun` get cores // 2 threads each (not all the cores)."""
    env = {k: v for k, v in os.environ.items() if k not in (THREADS_ENV, AUTO_ENV)}
    env["PYTHONPATH"] = str(ROOT / "python")
    command = [sys.executable, "-m", "ttt_video", "torchrun", "--standalone", "--nproc-per-node=2"]
    command += ["--log-dir", str(tmp_path / "logs"), "--redirects=3", "-m", "ttt_video", "doctor", "--json"]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "logs").rglob("stdout.log"))]
    assert len(reports) == 2
    expected = cpu_threads(2)
    assert [r["torch"]["threads"] for r in reports] == [expected, expected]
