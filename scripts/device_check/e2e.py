"""The end-to-end item: a random-weight model bundle, then ``python -m ttt_video sample`` as a user runs it.

Full mode: the 5B preset (TTT-MLP, bf16 weights drawn on the GPU), the CogVideoX-5b VAE with random
weights, and a random 2-layer T5 encoder 4096 wide (the DiT's text width) with the tiny SentencePiece
tokenizer; configs/eval/ttt-mlp/3s.toml with 5 denoising steps. Smoke: the tiny bundle and
configs/eval/tiny/3s.toml with 2 steps. The timeline comes from the run's events.jsonl.

The sampling entry point needs jsonschema and tomli_w (config contract, run inputs): without them the
item is "blocked" and says so. Without PyAV it runs with TTT_VIDEO_DISCARD_VIDEO=1 (frames decoded and
dropped, no video.mp4).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STORYBOARD = ROOT / "examples" / "storyboards" / "puppy-3s.jsonl"
T5_WIDTH_5B = 4096


def random_bundle(s, root: Path) -> Path:
    """A complete bundle with random weights in ``root/bundle`` (tiny in smoke mode, else 5B)."""
    from ttt_video.demo.tiny_bundle import make_tiny_bundle

    bundle = root / "bundle"
    if s.smoke:
        return make_tiny_bundle(bundle, seed=0)
    import torch
    from ttt_video.contracts.bundle import write_bundle_info
    from ttt_video.demo.tiny_parts import make_tiny_text_encoder, make_tiny_vae
    from ttt_video.models import build_config
    from ttt_video.vae import COGVIDEOX_5B_VAE_CONFIG

    from .common import random_dit

    model = random_dit(build_config("5B", ssm_layer="ttt_mlp"), s.device, s.dtype)
    model.save_pretrained(bundle / "transformer")
    del model
    torch.cuda.empty_cache()
    make_tiny_vae(bundle / "vae", seed=0, config=COGVIDEOX_5B_VAE_CONFIG)
    make_tiny_text_encoder(
        bundle / "text_encoder", bundle / "tokenizer", seed=0, d_model=T5_WIDTH_5B
    )
    write_bundle_info(
        bundle,
        latent_scale=0.7,
        source="random weights (scripts/device-check)",
        ssm_layer="ttt_mlp",
        seed=0,
    )
    return bundle


def sample_command(s, bundle: Path, run: Path) -> list[str]:
    """The research system's command line, as a user types it."""
    config = ROOT / "configs" / "eval" / ("tiny" if s.smoke else "ttt-mlp") / "3s.toml"
    return [
        *(
            sys.executable,
            "-m",
            "ttt_video",
            "sample",
            "--job.config_file",
            str(config),
        ),
        f"--checkpoint.model_dir={bundle}",
        f"--eval.input_file={STORYBOARD}",
        f"--eval.num_denoising_steps={2 if s.smoke else 5}",
        *("--run-dir", str(run)),
    ]


def timeline(events: list[dict[str, Any]], spawned: float) -> dict[str, Any]:
    """Seconds from the process's spawn to its milestones, the loads, the steps and the decode."""

    def first(kind: str) -> dict[str, Any] | None:
        return next((e for e in events if e["type"] == kind), None)

    def since_spawn(event: dict[str, Any] | None) -> float | None:
        return None if event is None else round(event["time"] - spawned, 3)

    steps = [e for e in events if e["type"] == "step"]
    windows = [e for e in events if e["type"] == "decode.window"]
    error = first("error")
    return {
        "spawn_to_run_started": since_spawn(first("run.started")),
        "spawn_to_first_step": since_spawn(steps[0] if steps else None),
        "load_seconds": {
            e["component"]: e["seconds"] for e in events if e["type"] == "model.loaded"
        },
        "steps": len(steps),
        "step_seconds": [
            round(b["elapsed"] - a["elapsed"], 3)
            for a, b in zip([{"elapsed": 0}, *steps], steps)
        ],
        "decode_seconds": windows[-1]["elapsed"] if windows else None,
        "spawn_to_finished": since_spawn(first("run.finished")),
        "error": None
        if error is None
        else {k: error.get(k) for k in ("code", "message")},
    }


def read_events(run: Path) -> list[dict[str, Any]]:
    path = run / "events.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_e2e(s, out) -> None:
    missing = [
        m for m in ("jsonschema", "tomli_w") if importlib.util.find_spec(m) is None
    ]
    if missing:
        reason = (
            f"python -m ttt_video needs {', '.join(missing)} (the config contract and the run inputs), which this "
            "Python lacks; carry them as wheels (docs/benchmarks.md, 'GPU: scripts/device-check')"
        )
        out.update(status="blocked", reason=reason)
        return
    env = dict(os.environ)
    if importlib.util.find_spec("av") is None:
        env["TTT_VIDEO_DISCARD_VIDEO"] = "1"
        out.update(
            video="PyAV is missing: frames decoded and dropped (TTT_VIDEO_DISCARD_VIDEO=1)"
        )
    with tempfile.TemporaryDirectory(prefix="device-check-e2e-") as tmp:
        started = time.perf_counter()
        bundle = random_bundle(s, Path(tmp))
        out.update(bundle_seconds=round(time.perf_counter() - started, 1))
        run = Path(tmp) / "run"
        command = sample_command(s, bundle, run)
        out.update(command=" ".join(command[1:]))
        spawned = time.time()
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, check=False
        )
        out.update(
            exit_code=done.returncode, wall_seconds=round(time.time() - spawned, 3)
        )
        out.update(timeline(read_events(run), spawned), stderr_tail=done.stderr[-3000:])
        mp4 = run / "video-0" / "video.mp4"
        out.update(mp4_bytes=mp4.stat().st_size if mp4.is_file() else None)
    if done.returncode != 0:
        out.update(
            status="failed",
            reason=f"python -m ttt_video sample exited with {done.returncode}: {out['error']}",
        )
