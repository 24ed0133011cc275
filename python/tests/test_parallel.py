"""Parallel layouts (TP, FSDP, HSDP, TP x FSDP, CFG) give the single-process results, on CPU with gloo.

This file is also the torchrun worker: ``python -m torch.distributed.run ... test_parallel.py --worker
SPEC.json`` loads each case's tiny DiT through ``ttt_video.parallel``, runs the forward on the layout and
saves every rank's output; the tests compare them with single-process forwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ttt_video.models import TTTVideoDiT, build_config
from ttt_video.parallel import ParallelDims, ParallelismError, build_mesh, load_parallel_dit

HERE = Path(__file__).resolve().parent
SSM_LAYERS = ("ttt_mlp", "ttt_linear")
TIMESTEP = 637.0

# (name, dims, world size, weights format); every case runs with TTT-MLP and with TTT-Linear
CASES_2 = [
    ("tp2", {"tp": 2}, "safetensors"),
    ("fsdp2", {"dp_shard": 2}, "safetensors"),
    ("cfg2", {"cfg": 2}, "safetensors"),
]
CASES_4 = [
    ("hsdp2x2", {"dp_replicate": 2, "dp_shard": 2}, "safetensors"),
    ("tp2xfsdp2", {"dp_shard": 2, "tp": 2}, "safetensors"),
    ("tp2xfsdp2-dcp", {"dp_shard": 2, "tp": 2}, "dcp"),
    ("cfg2xtp2", {"cfg": 2, "tp": 2}, "safetensors"),
]


# -------------------------------------------------------------------------------------------------
# inputs and single-process references
# -------------------------------------------------------------------------------------------------


def nine_second_inputs(dp_index: int) -> dict[str, torch.Tensor]:
    """The tiny 9 s input of one data-parallel rank (each dp rank gets its own video)."""
    g = torch.Generator().manual_seed(1000 + dp_index)
    return {
        "latents": torch.randn(1, 37, 16, 8, 12, generator=g),
        "text": torch.randn(1, 3, 8, 32, generator=g),
        "text_uncond": torch.randn(1, 3, 8, 32, generator=g),
        "timesteps": torch.full((1,), TIMESTEP),
    }


def dp_index(rank: int, dims: dict[str, int]) -> int:
    return rank // (dims.get("cfg", 1) * dims.get("tp", 1))


def make_weights(root: Path, ssm_layer: str) -> tuple[Path, Path]:
    """A tiny DiT with every parameter randomised (distinct per head), as safetensors and as DCP."""
    model = TTTVideoDiT.from_config(build_config("tiny", ssm_layer=ssm_layer), seed=3)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * p.abs().mean().clamp(min=0.1) * torch.randn(p.shape, generator=g))
    folder = root / f"{ssm_layer}-safetensors"
    model.save_pretrained(folder)
    dcp_dir = root / f"{ssm_layer}-dcp"
    import torch.distributed.checkpoint as dcp

    dcp.save({"model": model.state_dict()}, checkpoint_id=str(dcp_dir), no_dist=True)
    return folder, dcp_dir


def reference_forward(folder: Path, inputs: dict[str, torch.Tensor], cfg: bool) -> torch.Tensor:
    model = TTTVideoDiT.from_pretrained(folder).eval()
    with torch.no_grad():
        cond = model(inputs["latents"], inputs["text"], inputs["timesteps"])
        if not cfg:
            return cond
        uncond = model(inputs["latents"], inputs["text_uncond"], inputs["timesteps"])
        return torch.cat([uncond, cond])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """In-process references on one thread: on a shared 2-core machine OpenMP threads that wait for
    each other make a forward 40x slower; the torchrun workers run with OMP_NUM_THREADS=1 too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# -------------------------------------------------------------------------------------------------
# the torchrun worker
# -------------------------------------------------------------------------------------------------


def worker(spec_file: Path) -> None:
    import torch.distributed as dist

    from ttt_video.parallel import CfgParallel, submesh

    spec = json.loads(spec_file.read_text())
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    out = Path(spec["out"])
    for case in spec["cases"]:
        dims = case["dims"]
        mesh = build_mesh(ParallelDims(**dims), world, "cpu")
        for ssm_layer in SSM_LAYERS:
            weights = spec["weights"][ssm_layer]
            config = build_config("tiny", ssm_layer=ssm_layer)
            source = {f"{case['format']}_dir": weights[case["format"]]}
            model = load_parallel_dit(config, mesh, dtype=torch.float32, device="cpu", **source)
            inputs = nine_second_inputs(dp_index(rank, dims))
            cfg_mesh = submesh(mesh, "cfg")
            # the sampler's conditions: inference mode, the CFG pair as one batch [uncond, cond]
            with torch.inference_mode():
                if cfg_mesh is not None:
                    two = CfgParallel(model, cfg_mesh)
                    v = two(
                        torch.cat([inputs["latents"]] * 2),
                        torch.cat([inputs["text_uncond"], inputs["text"]]),
                        torch.cat([inputs["timesteps"]] * 2),
                    )
                else:
                    v = model(inputs["latents"], inputs["text"], inputs["timesteps"])
            torch.save(v.clone(), out / f"{case['name']}-{ssm_layer}-rank{rank}.pt")
            sizes = {"local": 0, "total": 0}
            for p in model.parameters():
                sizes["local"] += (p.to_local() if hasattr(p, "to_local") else p).numel()
                sizes["total"] += p.numel()
            (out / f"{case['name']}-{ssm_layer}-rank{rank}.json").write_text(json.dumps(sizes))
    # the layout is checked against the model before any weight is read (the folder does not exist)
    try:
        mesh = build_mesh(ParallelDims(dp_shard=world // 2, tp=2), world, "cpu")
        load_parallel_dit(
            build_config("tiny", num_heads=1),
            mesh,
            dtype=torch.float32,
            device="cpu",
            safetensors_dir=out / "no-such-weights",
        )
        message = "no error"
    except Exception as error:  # noqa: BLE001 (recorded for the test)
        message = f"{type(error).__name__}: {error}"
    (out / f"heads-error-rank{rank}.txt").write_text(message)
    dist.barrier()
    dist.destroy_process_group()


def launch(nproc: int, args: list[str], module: bool = False) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd += ["-m", *args] if module else args
    return subprocess.Popen(
        cmd, env=env, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def run_worker(tmp: Path, weights: dict, cases: list, nproc: int) -> tuple[Path, float]:
    out = tmp / f"out-{nproc}"
    out.mkdir()
    spec = {
        "out": str(out),
        "weights": {k: {"safetensors": str(v[0]), "dcp": str(v[1])} for k, v in weights.items()},
        "cases": [{"name": n, "dims": d, "format": f} for n, d, f in cases],
    }
    (tmp / f"spec-{nproc}.json").write_text(json.dumps(spec))
    started = time.perf_counter()
    proc = launch(nproc, [str(HERE / "test_parallel.py"), "--worker", str(tmp / f"spec-{nproc}.json")])
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    return out, time.perf_counter() - started


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("weights")
    return {ssm: make_weights(root, ssm) for ssm in SSM_LAYERS}


class References(dict):
    """Single-process outputs by (ssm layer, dp index, cfg), computed when first asked for."""

    def __init__(self, weights: dict) -> None:
        super().__init__()
        self.weights = weights

    def __missing__(self, key: tuple[str, int, bool]) -> torch.Tensor:
        ssm, dp, cfg = key
        with one_thread():
            self[key] = reference_forward(self.weights[ssm][0], nine_second_inputs(dp), cfg)
        return self[key]


@pytest.fixture(scope="module")
def references(weights) -> References:
    return References(weights)


@pytest.fixture(scope="module")
def two_process_outputs(tmp_path_factory, weights) -> Path:
    return run_worker(tmp_path_factory.mktemp("w2"), weights, CASES_2, 2)[0]


@pytest.fixture(scope="module")
def four_process_outputs(tmp_path_factory, weights) -> Path:
    return run_worker(tmp_path_factory.mktemp("w4"), weights, CASES_4, 4)[0]


def check_case(out: Path, references: dict, name: str, dims: dict, world: int) -> None:
    for ssm in SSM_LAYERS:
        for rank in range(world):
            # the layout really shards: FSDP splits every parameter, TP most of them
            sizes = json.loads((out / f"{name}-{ssm}-rank{rank}.json").read_text())
            share = sizes["local"] / sizes["total"]
            shard, tp = dims.get("dp_shard", 1), dims.get("tp", 1)
            assert share <= 1.01 / shard * (0.75 if tp > 1 else 1) and share >= 0.99 / (shard * tp), (
                name,
                share,
            )
            got = torch.load(out / f"{name}-{ssm}-rank{rank}.pt")
            want = references[(ssm, dp_index(rank, dims), "cfg" in dims)]
            assert got.shape == want.shape
            error = relative_error(got, want)
            assert error < 1e-5, f"{name} {ssm} rank {rank}: relative error {error:.3g}"


@pytest.mark.parametrize(("name", "dims", "fmt"), CASES_2, ids=[c[0] for c in CASES_2])
def test_two_process_layouts_match_one_process(two_process_outputs, references, name, dims, fmt):
    check_case(two_process_outputs, references, name, dims, 2)


@pytest.mark.parametrize(("name", "dims", "fmt"), CASES_4, ids=[c[0] for c in CASES_4])
def test_four_process_layouts_match_one_process(four_process_outputs, references, name, dims, fmt):
    check_case(four_process_outputs, references, name, dims, 4)


def test_heads_not_divisible_fail_before_weights_load(two_process_outputs):
    for rank in range(2):
        message = (two_process_outputs / f"heads-error-rank{rank}.txt").read_text()
        assert message.startswith("ParallelismError"), message
        assert "parallelism.tp_sharding = 2" in message and "num_heads = 1" in message


def test_mesh_must_match_world_size():
    with pytest.raises(ParallelismError) as info:
        build_mesh(ParallelDims(dp_shard=2, tp=2), 2, "cpu")  # validated before any process group
    message = str(info.value)
    for field in ("parallelism.dp_sharding", "parallelism.tp_sharding", "parallelism.cfg_parallel"):
        assert field in message
    assert "= 4, but the run has 2 processes" in message
    with pytest.raises(ParallelismError, match="parallelism.cfg_parallel must be 1 or 2"):
        ParallelDims(cfg=3)
    assert ParallelDims(dp_replicate=2, dp_shard=1, cfg=2, tp=2).mesh_dims() == (
        ("dp_replicate", "dp_shard", "cfg", "tp"),
        (2, 1, 2, 2),
    )
    assert ParallelDims(tp=2).mesh_dims() == (("dp_shard", "tp"), (1, 2))


# -------------------------------------------------------------------------------------------------
# the sampler under torchrun
# -------------------------------------------------------------------------------------------------


def sampler_run(run: Path, nproc: int) -> str:
    proc = launch(nproc, ["ttt_video", "sample", "--run-dir", str(run)], True)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    return log


SAMPLER_VIDEOS = [[{"text": "A puppy chases bubbles."}]]
SAMPLER_EVAL = {"num_denoising_steps": 2, "cfg_batch": False}


def parallel_sampler_video(
    tmp_path: Path, bundle: Path, nproc: int, **parallelism
) -> tuple[Path, np.ndarray]:
    """The run directory and the frames of the one video of ``nproc`` sampler processes with ``parallelism``."""
    from test_pipeline import make_run, read_frames

    run = make_run(tmp_path, bundle, "3s", SAMPLER_VIDEOS, eval=SAMPLER_EVAL, parallelism=parallelism)
    sampler_run(run, nproc)
    return run, read_frames(run / "video-0" / "video.mp4")[0]


@pytest.fixture(scope="module")
def single_process_video(tmp_path_factory, tiny_bundle) -> np.ndarray:
    from test_pipeline import make_run, read_frames, sample

    run = make_run(tmp_path_factory.mktemp("single"), tiny_bundle, "3s", SAMPLER_VIDEOS, eval=SAMPLER_EVAL)
    with one_thread():
        assert sample(run) == 0
    return read_frames(run / "video-0" / "video.mp4")[0]


def test_cfg_parallel_sampler_frames_are_identical(tmp_path, tiny_bundle, single_process_video):
    """cfg_parallel 2 x dp_sharding 2 (FSDP), one video: the CFG pair of ranks 0-1 samples it, ranks 2-3
    (the other FSDP shard) run a stand-in round in lockstep and write nothing."""
    from test_pipeline import check_event_schema, events_of

    parallel, frames = parallel_sampler_video(tmp_path, tiny_bundle, 4, dp_sharding=2, cfg_parallel=2)
    assert np.array_equal(frames, single_process_video)
    events = events_of(parallel)
    check_event_schema(events)
    assert [(e["video"], e["rank"]) for e in events if e["type"] == "video.written"] == [(0, 0)]
    assert {e["rank"] for e in events if e["type"] == "step"} == {0}
    assert sorted(p.name for p in parallel.iterdir() if p.is_dir()) == ["video-0"]


def test_tensor_parallel_sampler_frames_match(tmp_path, tiny_bundle, single_process_video):
    from test_pipeline import events_of

    parallel, frames = parallel_sampler_video(tmp_path, tiny_bundle, 2, dp_sharding=1, tp_sharding=2)
    # TP sums a few dot products in another order (the TTT learning-rate projection of one head per
    # rank): the latents differ by ~1e-6, which flips a few uint8 values, and H.264's prediction spreads
    # the flips over their blocks (measured: mean |diff| 0.04, PSNR 55 dB; two different videos differ
    # by ~57 on average)
    diff = np.abs(frames.astype(int) - single_process_video.astype(int))
    psnr = 10 * np.log10(255**2 / max((diff.astype(float) ** 2).mean(), 1e-12))
    assert diff.mean() < 0.5 and psnr > 40, (diff.mean(), psnr)
    assert [(e["video"], e["rank"]) for e in events_of(parallel) if e["type"] == "video.written"] == [(0, 0)]


def test_pipeline_checks_heads_before_reading_weights(tmp_path, tiny_bundle):
    """load_models with a tp 2 mesh and a bundle whose DiT has one head: a CONFIG error naming both
    fields, raised before any weight is read (a stand-in mesh: the check needs only the dim sizes)."""
    from types import SimpleNamespace

    from test_pipeline import make_run

    from ttt_video.contracts.config import load_config
    from ttt_video.loading import load_models
    from ttt_video.runner import error_code

    bundle = tmp_path / "one-head"
    shutil.copytree(tiny_bundle, bundle)
    config_file = bundle / "transformer" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "num_heads": 1}))
    for weights in (bundle / "transformer").glob("*.safetensors"):
        weights.unlink()  # reading a weight would now fail with another error
    run = make_run(tmp_path, bundle, "3s", [], parallelism={"dp_sharding": 1, "tp_sharding": 2})
    mesh = SimpleNamespace(mesh_dim_names=("dp_shard", "tp"), size=lambda dim: (1, 2)[dim])
    emitted = []
    with pytest.raises(ParallelismError) as info:
        load_models(
            load_config(run / "config.toml"), torch.device("cpu"), lambda t, **f: emitted.append(t), mesh
        )
    assert "parallelism.tp_sharding = 2" in str(info.value) and "num_heads = 1" in str(info.value)
    assert "model.loaded" not in emitted
    assert error_code(info.value) == "CONFIG"
    assert [i.path for i in info.value.issues] == ["parallelism.tp_sharding"]  # TS shows it on the field


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]))
    else:
        sys.exit("usage: torchrun ... test_parallel.py --worker SPEC.json")
