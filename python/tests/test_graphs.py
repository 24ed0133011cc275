"""CUDA graphs for sampling (ttt_video.sampling.graphs): the static-buffer wrapper gives the model's results.

On a CPU the wrapper runs with ``eager_recorder`` (a "replay" calls the model on the static buffers into a
fixed output tensor, as a graph replay overwrites its static output), so the buffer, copy, cache and
output-copy code is the same code that replays CUDA graphs. The CUDA tests at the end record real graphs.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from ttt_video.models import TTTVideoDiT, build_config
from ttt_video.sampling import guided_denoiser, initial_noise, sample, step_table, video_generator
from ttt_video.sampling.graphs import (
    GraphedModel,
    cuda_graph_recorder,
    cuda_graphs_enabled,
    eager_recorder,
)

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def dit() -> TTTVideoDiT:
    return TTTVideoDiT(build_config("tiny", ssm_layer="ttt_mlp"), seed=0).eval().requires_grad_(False)


def texts(segments: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, segments, 8, 32, generator=g), torch.randn(1, segments, 8, 32, generator=g)


def run_sampler(model, segments: int, cfg_batch: bool, steps: int = 3, device: str = "cpu") -> torch.Tensor:
    """x0 of a short dpmpp_2m_sde run of ``model`` on the tiny 3 s (1 segment) or 9 s (3) latent grid."""
    cond, uncond = (t.to(device) for t in texts(segments))
    table = step_table(steps)
    generator = video_generator(7, 0)
    noise = initial_noise((1, 12 * segments + 1, 16, 8, 12), generator, torch.device(device))
    with torch.inference_mode():
        denoise = guided_denoiser(model, cond, uncond, table, cfg_batch=cfg_batch)
        return sample(denoise, noise, table, generator)


@pytest.mark.parametrize("cfg_batch", [True, False])
def test_wrapper_equals_the_model_over_a_sampling_run(dit, single_thread, cfg_batch):
    """New inputs every step are copied in; with cfg_batch = false the two calls of a step share one
    recording, so a wrapper that returned its static output would hand back v_cond twice."""
    graphed = GraphedModel(dit, eager_recorder, torch.device("cpu"))
    want = run_sampler(dit, 1, cfg_batch)
    got = run_sampler(graphed, 1, cfg_batch)
    assert torch.equal(got, want)
    assert graphed.recorded == 1 and len(graphed.signatures) == 1


def test_outputs_are_copies_and_inputs_are_copied_in(dit, single_thread):
    graphed = GraphedModel(dit, eager_recorder, torch.device("cpu"))
    g = torch.Generator().manual_seed(3)
    latents = [torch.randn(1, 13, 16, 8, 12, generator=g) for _ in range(3)]
    text, _ = texts(1)
    t = torch.tensor([500.0])
    with torch.inference_mode():
        first = graphed(latents[0], text, t)
        second = graphed(latents[1], text, t)
        kept = first.clone()
        graphed(latents[2], text, t)
        assert torch.equal(first, kept), "an earlier output was overwritten by a later replay"
        assert torch.equal(first, dit(latents[0], text, t))
        assert torch.equal(second, dit(latents[1], text, t))
        assert not torch.equal(first, second)
        latents[1].add_(1.0)  # the caller's tensors are not the buffers
        assert torch.equal(graphed(latents[0], text, t), first)


def test_one_recording_per_signature_and_the_oldest_dropped(dit, single_thread):
    graphed = GraphedModel(dit, eager_recorder, torch.device("cpu"))
    with torch.inference_mode():
        run_three = run_sampler(graphed, 3, cfg_batch=True, steps=2)
        assert graphed.recorded == 1
        run_sampler(graphed, 1, cfg_batch=True, steps=2)  # 3 s: a new signature replaces the 9 s one
        assert graphed.recorded == 2 and len(graphed.signatures) == 1
        assert torch.equal(run_sampler(graphed, 3, cfg_batch=True, steps=2), run_three)
        assert graphed.recorded == 3
    both = GraphedModel(dit, eager_recorder, torch.device("cpu"), max_recordings=2)
    for segments in (3, 1, 3, 1):
        run_sampler(both, segments, cfg_batch=True, steps=2)
    assert both.recorded == 2 and len(both.signatures) == 2
    both.release()
    assert both.signatures == []


def test_gradients_are_refused(dit):
    graphed = GraphedModel(dit, eager_recorder, torch.device("cpu"))
    text, _ = texts(1)
    with pytest.raises(RuntimeError, match="inference_mode"):
        graphed(torch.zeros(1, 13, 16, 8, 12), text, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="max_recordings"):
        GraphedModel(dit, eager_recorder, torch.device("cpu"), max_recordings=0)
    with pytest.raises(ValueError, match="warmup"):
        cuda_graph_recorder(warmup=0)


def _cfg_parallel_worker(rank: int, store: str, out: str) -> None:
    """One of two gloo ranks: CfgParallel over a GraphedModel, each rank replaying its own branch."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from ttt_video.parallel import CfgParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("cfg",))
        dit = TTTVideoDiT(build_config("tiny", ssm_layer="ttt_mlp"), seed=0).eval().requires_grad_(False)
        graphed = GraphedModel(dit, eager_recorder, torch.device("cpu"))
        x0 = run_sampler(CfgParallel(graphed, mesh["cfg"]), 1, cfg_batch=True)
        assert graphed.recorded == 1
        torch.save(x0, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_cfg_parallel_over_the_wrapper_equals_one_process(dit, tmp_path, single_thread):
    """Two ranks, one guidance branch each through its own GraphedModel; the exchange stays outside."""
    import torch.multiprocessing as mp

    out = tmp_path / "x0"
    mp.spawn(_cfg_parallel_worker, args=(str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    want = run_sampler(dit, 1, cfg_batch=False)  # CfgParallel runs each branch as a batch of its own
    for rank in (0, 1):
        assert torch.equal(torch.load(f"{out}.{rank}", weights_only=True), want)


# ------------------------------------------------------------------------------------------ selection


def test_selection_of_eval_cuda_graphs():
    from ttt_video.contracts.config import ConfigError

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert cuda_graphs_enabled("auto", cuda, sharded=False) is True
    assert cuda_graphs_enabled("auto", cpu, sharded=False) is False
    assert cuda_graphs_enabled("auto", cuda, sharded=True) is False
    assert cuda_graphs_enabled(True, cuda, sharded=False) is True
    for device in (cpu, cuda):
        assert cuda_graphs_enabled(False, device, sharded=True) is False
    for device, sharded, words in (
        (cpu, False, "needs a CUDA device|need a CUDA device"),
        (cuda, True, "sharded"),
    ):
        with pytest.raises(ConfigError, match=words) as error:
            cuda_graphs_enabled(True, device, sharded)
        assert [i.path for i in error.value.issues] == ["eval.cuda_graphs"]
    with pytest.raises(ConfigError, match="auto"):
        cuda_graphs_enabled("yes", cuda, sharded=False)


def make_run(tmp_path: Path, bundle: Path, **eval_fields) -> Path:
    """A tiny 3 s run directory as the SDK prepares it (config.toml, storyboards.jsonl)."""
    config = tomllib.loads((ROOT / "configs" / "eval" / "tiny" / "3s.toml").read_text())
    config["checkpoint"] = {"model_dir": str(bundle)}
    config["eval"].update(eval_fields)
    text = "".join(
        f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()) + "\n"
        for section, values in config.items()
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(text)
    (run / "storyboards.jsonl").write_text(json.dumps([{"text": "A mouse."}]) + "\n")
    return run


def test_true_on_a_cpu_is_a_config_error_before_loading(tmp_path, tiny_bundle):
    from ttt_video.__main__ import main

    run = make_run(tmp_path, tiny_bundle, cuda_graphs=True, num_denoising_steps=1)
    assert main(["sample", "--run-dir", str(run)]) == 1
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    error = events[-1]
    assert error["type"] == "error" and error["code"] == "CONFIG", error
    assert error["issues"][0]["path"] == "eval.cuda_graphs" and "CUDA" in error["message"]
    assert not any(e["type"] == "model.loading" for e in events)


def test_pipeline_uses_the_wrapper_it_is_given(tmp_path, tiny_bundle, single_thread):
    """The pipeline's denoise step calls models.velocity; with the eager recorder the latents are the
    DiT's, with cfg_batch true and false."""
    from ttt_video.contracts.config import load_config
    from ttt_video.loading import load_models
    from ttt_video.pipeline import _velocity_model, denoise, use_cuda_graphs

    run = make_run(tmp_path, tiny_bundle, num_denoising_steps=3)
    for cfg_batch in (True, False):
        cfg = load_config(run / "config.toml", [f"eval.cfg_batch={str(cfg_batch).lower()}"])
        models = load_models(cfg, torch.device("cpu"), lambda *a, **k: None)
        assert use_cuda_graphs(models, cfg) is False and models.velocity is None  # "auto" on a CPU
        assert _velocity_model(models, cfg) == (models.dit, cfg_batch)
        results = []
        for velocity in (None, GraphedModel(models.dit, eager_recorder, models.device)):
            models.velocity = velocity
            assert _velocity_model(models, cfg)[0] is (velocity or models.dit)
            job = type("Job", (), {"index": 0, "timings": {}})()
            cond, uncond = texts(1)
            generator = video_generator(3, 0)
            noise = initial_noise((1, 13, 16, 8, 12), generator, models.device)
            with torch.inference_mode():
                results.append(
                    denoise(models, cfg, job, (cond, uncond), noise, generator, lambda *a, **k: None)
                )
        assert torch.equal(results[0], results[1])


# ------------------------------------------------------------------------------------------ CUDA


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("cfg_batch", [True, False])
def test_cuda_graph_replay_matches_eager(dtype, cfg_batch):
    """Real CUDA graphs (the Triton scan inside them where ttt_kernel auto picks it) against eager."""
    model = TTTVideoDiT.from_config(build_config("tiny", ssm_layer="ttt_mlp"), device="cuda", dtype=dtype)
    model.eval().requires_grad_(False)
    graphed = GraphedModel(model, cuda_graph_recorder(), torch.device("cuda"))
    want = run_sampler(model, 3, cfg_batch, steps=4, device="cuda")
    got = run_sampler(graphed, 3, cfg_batch, steps=4, device="cuda")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert graphed.recorded == 1
