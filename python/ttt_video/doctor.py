"""What the Python half sees of the machine: versions, GPUs, ffmpeg, disk. JSON-able."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "safetensors",
    "sentencepiece",
    "av",
    "imageio-ffmpeg",
    "jsonschema",
    "numpy",
)


def doctor_report(disk_path: str | Path = ".") -> dict[str, Any]:
    report: dict[str, Any] = {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "packages": {name: _version(name) for name in PACKAGES},
        "torch": _torch_report(),
        "ffmpeg": _ffmpeg_report(),
        "disk": _disk_report(Path(disk_path)),
    }
    return report


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_report() -> dict[str, Any]:
    try:
        import torch
    except Exception as e:  # a broken install must still give a report
        return {"error": f"{type(e).__name__}: {e}"}
    out: dict[str, Any] = {
        "version": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "gpus": [],
    }
    if out["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out["gpus"].append(
                {
                    "index": i,
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "capability": f"{props.major}.{props.minor}",
                    "bf16": torch.cuda.is_bf16_supported(),
                }
            )
    return out


def _ffmpeg_report() -> dict[str, Any]:
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
        return {"path": exe, "version": imageio_ffmpeg.get_ffmpeg_version(), "source": "imageio-ffmpeg"}
    except Exception as e:
        path = shutil.which("ffmpeg")
        return {"path": path, "source": "PATH" if path else None, "error": f"{type(e).__name__}: {e}"}


def _disk_report(path: Path) -> dict[str, Any]:
    usage = shutil.disk_usage(path if path.exists() else Path.cwd())
    return {
        "path": str(path.resolve()),
        "free_gib": round(usage.free / 2**30, 1),
        "total_gib": round(usage.total / 2**30, 1),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as lines for a terminal (the TypeScript doctor adds findings and fixes)."""
    torch = report["torch"]
    lines = [
        f"python  {report['python']['version']} ({report['python']['executable']})",
        f"torch   {torch.get('version', torch.get('error'))}  cuda={torch.get('cuda_available')}",
        *(f"gpu {g['index']}   {g['name']} {g['memory_gib']} GiB" for g in torch.get("gpus", [])),
        f"ffmpeg  {report['ffmpeg'].get('path')}",
        f"disk    {report['disk']['free_gib']} GiB free at {report['disk']['path']}",
    ]
    return "\n".join(lines)
