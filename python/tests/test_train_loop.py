"""The training loop on one CPU process: the step's loss, overfitting, trainable sets, events, errors.

Also the helpers of the other ``test_train_*`` files: a random dataset in the contract's format (the
``prepare`` output), a transformer-only bundle and a run directory's config. The tiny preset on 4 x 4
latents (32 x 32 pixels, a 2 x 2 patch grid) with 12 text tokens: 12 + 13 * 4 = 64 TTT tokens, four
mini-batches of 16.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import write_config
from safetensors.torch import save_file

from ttt_video.__main__ import main
from ttt_video.contracts.config import load_config
from ttt_video.contracts.events import check_event
from ttt_video.models import TTTVideoDiT, build_config
from ttt_video.training import diffusion_loss, is_ttt_parameter
from ttt_video.training.batches import Batch, draw_batch
from ttt_video.training.dataset import open_dataset
from ttt_video.training.model_setup import TrainingModel
from ttt_video.training.optim import build_optimizer, build_scheduler
from ttt_video.training.step import train_step
from ttt_video.weights.dcp import load_dcp_weights

TEXT_LEN, TEXT_DIM, LATENT = 12, 32, 4


# -------------------------------------------------------------------------------------------------
# helpers (also used by the other test_train_* files)
# -------------------------------------------------------------------------------------------------


def write_dataset(root: Path, clips: int = 4, segments: int = 1, seed: int = 0, dtype=torch.float32) -> Path:
    """A dataset folder as `prepare` writes it, with random moments and text embeddings."""
    (root / "latents").mkdir(parents=True, exist_ok=True)
    (root / "text").mkdir(exist_ok=True)
    info = {
        "format": "ttt-video-dataset", "version": 1, "fps": 16, "width": 8 * LATENT, "height": 8 * LATENT,
        "latent_channels": 16, "txt_maxlen": TEXT_LEN, "text_dim": TEXT_DIM, "window_frames": 49,
        "dtype": "float32", "vae": "test", "text_encoder": "test", "bundle": "test",
    }  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(info))
    g = torch.Generator().manual_seed(seed)
    lines = []
    for i in range(clips):
        clip, frames = f"{1000 * segments + i:06d}", 12 * segments + 1
        mean = torch.randn(frames, 16, LATENT, LATENT, generator=g)
        logvar = -3 + 0.5 * torch.randn(frames, 16, LATENT, LATENT, generator=g)
        moments = torch.cat([mean, logvar], dim=1).to(dtype).contiguous()
        save_file({"moments": moments}, str(root / "latents" / f"{clip}.safetensors"))
        text = torch.randn(segments, TEXT_LEN, TEXT_DIM, generator=g).to(dtype)
        save_file({"text": text}, str(root / "text" / f"{clip}.safetensors"))
        entry = {
            "id": clip, "annotation_line": i, "source": f"clip{i}.mp4", "segments": segments,
            "frames": 4 * frames - 3, "latent_frames": frames, "latents": f"latents/{clip}.safetensors",
            "text": f"text/{clip}.safetensors", "prompts": ["a prompt"] * segments,
        }  # fmt: skip
        lines.append(json.dumps(entry) + "\n")
    with open(root / "manifest.jsonl", "a") as manifest:
        manifest.write("".join(lines))
    null_text = torch.randn(1, TEXT_LEN, TEXT_DIM, generator=torch.Generator().manual_seed(seed + 1))
    save_file({"text": null_text.to(dtype)}, str(root / "null_text.safetensors"))
    return root


def write_bundle(root: Path, seed: int = 0, ssm_layer: str = "ttt_mlp") -> Path:
    """A bundle with only transformer/ (all that training reads): the tiny DiT with random weights."""
    TTTVideoDiT.from_config(build_config("tiny", ssm_layer=ssm_layer), seed=seed).save_pretrained(
        root / "transformer"
    )
    return root


def write_run(run: Path, bundle: Path, dataset: Path, **sections) -> Path:
    """A run directory with its config.toml (tiny model, 3 steps of 2 samples; ``sections`` override)."""
    run.mkdir(parents=True, exist_ok=True)
    config = {
        "job": {"device": "cpu", "seed": 7, "exp_name": "train-test"},
        "model": {"size": "tiny", "video_length": "3sec", "ssm_layer": "ttt_mlp", "mini_batch_size": 16},
        "eval": {"image_width": 32, "image_height": 32, "sampling_num_frames": 13, "txt_maxlen": TEXT_LEN},
        "training": {"dataset_path": str(dataset), "global_batch_size": 2, "steps": 3, "warmup_steps": 0,
                     "adapter_method": "sft"},
        "optimizer": {"lr": 1e-3, "lr_ssm": 1e-3, "gradient_clipping_norm": 1.0},
        "checkpoint": {"model_dir": str(bundle)},
        "parallelism": {"fsdp_unsharded_dtype": "float32", "dp_sharding": 1},
        "remat": {"scan_checkpoint_group_size": 2},
    }  # fmt: skip
    write_config(run, config, **sections)
    return run


def events_of(run: Path) -> list[dict]:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    for event in events:
        check_event(event)  # every event matches the contract
    return events


def checkpoint_weights(folder: Path, ssm_layer: str = "ttt_mlp") -> dict[str, torch.Tensor]:
    """The model weights of a training checkpoint, read into a plain single-process DiT."""
    model = TTTVideoDiT.from_config(build_config("tiny", ssm_layer=ssm_layer), device="meta").to_empty(
        device="cpu"
    )
    load_dcp_weights(model, folder)
    return model.state_dict()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_dataset(root, clips=2, segments=3, seed=9)  # of another length: not trained on
    return write_dataset(root, clips=4, segments=1)


def plain_setup(run: Path, adapter: str = "sft", **changes):
    """(cfg, TrainingModel, optimizer, scheduler) of a run's config, built in this process."""
    from ttt_video.training.model_setup import build_training_model

    cfg = load_config(run / "config.toml", run_kind="train")
    trained, _ = build_training_model(cfg, torch.device("cpu"), None)
    optimizer = build_optimizer(trained.model, cfg.optimizer, adapter)
    return cfg, trained, optimizer, build_scheduler(optimizer, cfg.optimizer, cfg.training)


def first_batch(cfg, size: int = 2) -> Batch:
    data = open_dataset(cfg)
    return draw_batch(data, data.clips[:size], cfg, step=0, dp_rank=0, dp_world=1)


# -------------------------------------------------------------------------------------------------
# tests
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accumulation", [1, 2])
def test_step_loss_is_diffusion_loss_of_the_batch(tmp_path, bundle, dataset, single_thread, accumulation):
    run = write_run(tmp_path / "run", bundle, dataset, training={"grad_accum_steps": accumulation})
    cfg, trained, optimizer, scheduler = plain_setup(run)
    batch = first_batch(cfg)
    before = copy.deepcopy(trained.model)
    with torch.no_grad():
        expected = diffusion_loss(before, batch.latents, batch.text, batch.timesteps, batch.noise).mean()
    result = train_step(trained, optimizer, scheduler, batch, cfg, step=1)
    # accumulation halves the batch: the mean of the two halves' means, in another summation order
    assert result.loss == pytest.approx(float(expected), rel=1e-6 if accumulation > 1 else 1e-7)
    assert result.lr == {
        name: 1e-3 for name in ("ttt_decay", "ttt_no_decay", "other_decay", "other_no_decay")
    }
    assert result.grad_norm > 0
    changed = [n for n, p in trained.model.named_parameters() if not torch.equal(p, before.state_dict()[n])]
    assert len(changed) == len(list(before.parameters()))  # sft: every parameter moved


def test_overfitting_one_batch_lowers_the_loss_tenfold(tmp_path, bundle, dataset, single_thread):
    run = write_run(
        tmp_path / "run", bundle, dataset,
        training={"text_dropout": 0.0, "steps": 1000}, optimizer={"lr": 1e-2, "lr_ssm": 1e-2},
        remat={"scan_checkpoint_group_size": 1000},
    )  # fmt: skip
    cfg, trained, optimizer, scheduler = plain_setup(run)
    batch = first_batch(cfg, size=1)  # the same latents, text, timestep and noise at every step
    losses = [train_step(trained, optimizer, scheduler, batch, cfg, step=i + 1).loss for i in range(30)]
    # measured: 1.42 -> 0.03 in 30 steps (0.11 after 20)
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_ttt_adapter_changes_only_ttt_parameters_and_gates(tmp_path, bundle, dataset, single_thread):
    run = write_run(tmp_path / "run", bundle, dataset, training={"adapter_method": "ttt"})
    cfg, trained, optimizer, scheduler = plain_setup(run, adapter="ttt")
    before = {n: p.detach().clone() for n, p in trained.model.named_parameters()}
    for step in range(2):
        train_step(trained, optimizer, scheduler, first_batch(cfg), cfg, step=step + 1)
    changed = {n for n, p in trained.model.named_parameters() if not torch.equal(p, before[n])}
    ttt = {n for n in before if is_ttt_parameter(n)}
    assert changed == ttt  # every TTT parameter and gate moved, nothing else did
    assert any("gating_alpha" in n for n in changed) and any(n.endswith(".W1") for n in changed)


def test_a_run_writes_checkpoints_loss_curve_and_valid_events(tmp_path, bundle, dataset):
    run = write_run(tmp_path / "run", bundle, dataset, training={"steps": 4}, checkpoint={"interval": 2})
    assert main(["train", "--run-dir", str(run), "--stage", "9s", "--stage-index", "1", "--stages", "3"]) == 0
    events = events_of(run)
    types = [e["type"] for e in events]
    assert types[:2] == ["run.started", "stage.started"]
    assert types.index("model.loading") < types.index("model.loaded") < types.index("train.step")
    assert types[-2:] == ["stage.finished", "run.finished"]
    started = events[0]
    assert (started["kind"], started["total"], started["world_size"]) == ("train", 4, 1)
    assert events[1] == {**events[1], "stage": "9s", "index": 1, "stages": 3}
    steps = [e for e in events if e["type"] == "train.step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4] and all(math.isfinite(e["loss"]) for e in steps)
    # linear decay from 1e-3 to lr_end 0 over 4 steps, no warm-up
    assert [e["lr"]["other_decay"] for e in steps] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert all(e["tokens_per_second"] > 0 and e["eta"] >= 0 for e in steps)
    written = [(e["step"], e["final"]) for e in events if e["type"] == "checkpoint.written"]
    assert written == [(2, False), (4, True)]
    assert events[-2]["checkpoint"] == str(run / "checkpoints" / "step-4")
    for step in (2, 4):
        assert (run / "checkpoints" / f"step-{step}" / "COMPLETE").is_file()
    svg = (run / "loss.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    # a warning says that the clips of another length are not used
    assert any(e["type"] == "warning" and "4 clip(s)" in e["message"] for e in events)


def test_non_finite_loss_is_a_non_finite_error_naming_the_step(tmp_path, bundle, dataset, monkeypatch):
    from ttt_video.training import step as step_module

    real = step_module.diffusion_loss
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(step_module, "diffusion_loss", poisoned)
    run = write_run(tmp_path / "run", bundle, dataset)
    assert main(["train", "--run-dir", str(run)]) == 1
    error = events_of(run)[-1]
    assert error["type"] == "error" and error["code"] == "NON_FINITE"
    assert "step 2" in error["message"]
    assert not (run / "checkpoints").exists()


def test_dataset_without_clips_of_the_length_is_a_data_error(tmp_path, bundle, dataset):
    # 2 segments: 2 * 12 + 25 * 4 = 124 TTT tokens, mini-batches of 4
    model = {"video_length": "9sec", "mini_batch_size": 4}
    run = write_run(tmp_path / "run", bundle, dataset, eval={"sampling_num_frames": 25}, model=model)
    assert main(["train", "--run-dir", str(run)]) == 1
    error = events_of(run)[-1]
    assert error["code"] == "DATA"
    assert "no clip has 2 segment(s) and 25 latent frames" in error["message"]
    assert "4 of 1 segment(s) / 13 latent frames" in error["message"]
    assert "2 of 3 segment(s) / 37 latent frames" in error["message"]


def test_dataset_of_another_text_length_is_a_config_error(tmp_path, bundle, dataset):
    run = write_run(tmp_path / "run", bundle, dataset, eval={"txt_maxlen": 28})
    assert main(["train", "--run-dir", str(run)]) == 1
    error = events_of(run)[-1]
    assert error["code"] == "CONFIG"
    assert error["issues"][0]["path"] == "eval.txt_maxlen"
    assert "set eval.txt_maxlen = 12" in error["message"]


def test_training_model_runs_fp32_on_the_cpu(tmp_path, bundle, dataset):
    run = write_run(tmp_path / "run", bundle, dataset, parallelism={"fsdp_unsharded_dtype": "bfloat16"})
    _, trained, _, _ = plain_setup(run)
    assert isinstance(trained, TrainingModel)
    assert trained.compute_dtype == torch.float32 and not trained.use_autocast
    assert {p.dtype for p in trained.model.parameters()} == {torch.float32}
    assert not trained.model.config.rope_bf16  # "auto" follows the compute dtype
