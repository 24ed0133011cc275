"""What every process of a run does first: CPU threads that hold up under load, and dying with its parent.

Imported before torch: the thread count goes into the environment, where OpenMP reads it once.
"""

from __future__ import annotations

import os
import signal
import sys

THREADS_ENV = "OMP_NUM_THREADS"


def cpu_threads(local_processes: int, cores: int | None = None) -> int:
    """Threads per process on a CPU: this machine's cores shared between its processes of the run.

    A function of the machine and the layout only (not of the load), so that the same run on the same
    machine computes in the same order and gives the same numbers. Waiting threads sleep instead of
    spinning (OMP_WAIT_POLICY=PASSIVE), so that a loaded machine slows a run down gracefully.
    """
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, cores // max(1, local_processes))


AUTO_ENV = "TTT_VIDEO_AUTO_THREADS"  # set by the torchrun launcher: the workers choose their thread count


def configure_threads(launcher: bool = False) -> int | None:
    """Sets OMP_NUM_THREADS and OMP_WAIT_POLICY (unless the user did) before torch is imported; returns
    the thread count in use (None in the launcher).

    The torchrun launcher sets no thread count: its workers inherit its environment, and each must count
    the processes of its own node (LOCAL_WORLD_SIZE, which torchrun gives them). torchrun itself sets
    OMP_NUM_THREADS=1 for several workers; the launcher's marker lets the workers replace that with ours.
    A thread count the user set wins everywhere.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if launcher:
        if THREADS_ENV not in os.environ:
            os.environ[AUTO_ENV] = "1"
        return None
    if THREADS_ENV not in os.environ or os.environ.get(AUTO_ENV) == "1":
        os.environ[THREADS_ENV] = str(cpu_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    return int(os.environ[THREADS_ENV])


def die_with_parent() -> bool:
    """SIGTERM when the parent dies, even mid-run (Linux): a launcher killed with SIGKILL leaves no
    worker holding GPUs. Returns whether it was installed."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
        return False
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return True
