"""The fine-tuning loop of one run directory (spec 9.2): data, model, optimiser, resume, steps, checkpoints.

Data-parallel identity (spec 8.1): ``dp_rank = rank // tp_sharding``, ``dp_world = world // tp_sharding``
(training has no CFG parallelism). Each data-parallel rank trains on ``global_batch_size / dp_world``
samples per step; tensor-parallel peers share theirs.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..contracts.config import ConfigError, Issue
from ..runner import RunContext
from .batches import Batch, SampleOrder, draw_batch
from .checkpoints import (
    TrainingState,
    checkpoint_path,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    scan_checkpoints,
)
from .dataset import Dataset, open_dataset
from .loss_curve import write_loss_curve
from .model_setup import TrainingModel, build_training_model
from .optim import build_optimizer, build_scheduler
from .step import StepResult, train_step

RECENT_STEPS = 20  # steps the ETA averages over


def _broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value`` on every rank (the value itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device if device.type == "cuda" else "cpu")
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def _check_dataset_fits_model(dataset: Dataset, trained: TrainingModel) -> None:
    config = trained.model.config
    if dataset.info["text_dim"] != config.text_dim:
        message = (
            f"the dataset's text embeddings are {dataset.info['text_dim']} wide but the DiT takes "
            f"text_dim {config.text_dim}; prepare the dataset with this model's bundle"
        )
        raise ConfigError([Issue("training.dataset_path", message)])
    if dataset.info["latent_channels"] != config.in_channels:
        message = f"the dataset has {dataset.info['latent_channels']} latent channels, the DiT takes {config.in_channels}"
        raise ConfigError([Issue("training.dataset_path", message)])


class Trainer:
    """The state of a training run on this rank; ``resume()`` then ``run()``."""

    def __init__(self, ctx: RunContext, cfg: Any, device: torch.device, mesh: Any) -> None:
        self.ctx, self.cfg, self.device = ctx, cfg, device
        tp = cfg.parallelism.tp_sharding if mesh is not None else 1
        self.dp_rank, self.dp_world = ctx.topology.rank // tp, ctx.topology.world_size // tp
        self.local_batch = cfg.training.global_batch_size // self.dp_world
        self.dataset = open_dataset(cfg)
        if self.dataset.skipped:
            ctx.emit_run(
                "warning",
                message=f"training on {len(self.dataset.clips)} clip(s); {self.dataset.skipped} clip(s) of the "
                "dataset have another length than eval.sampling_num_frames",
                path=str(self.dataset.root),
            )
        self.order = SampleOrder(len(self.dataset.clips))
        self.trained = self._load_model(mesh)
        _check_dataset_fits_model(self.dataset, self.trained)
        model = self.trained.model
        self.optimizer = build_optimizer(model, cfg.optimizer, cfg.training.adapter_method or "sft")
        self.scheduler = build_scheduler(self.optimizer, cfg.optimizer, cfg.training)
        self.root = ctx.run.file("checkpoints")
        self.step, self.losses, self.saved_step = 0, [], -1

    def _load_model(self, mesh: Any) -> TrainingModel:
        self.ctx.emit_run("model.loading", component="transformer")
        started = time.perf_counter()
        trained, warnings = build_training_model(self.cfg, self.device, mesh)
        seconds = round(time.perf_counter() - started, 3)
        self.ctx.emit_run("model.loaded", component="transformer", seconds=seconds)
        for message in warnings:
            self.ctx.emit_run("warning", message=message)
        return trained

    # ---------------------------------------------------------------------------------------------
    # resume

    def _choose_checkpoint(self) -> int:
        """The step to resume from (rank 0 looks, warns about broken checkpoints, tells the others); -1 none."""
        chosen = -1
        if self.ctx.topology.rank == 0 and self.root.is_dir():
            scan = scan_checkpoints(self.root)
            for folder, why in scan.broken:
                self.ctx.events.emit(
                    "warning", message=f"ignoring the checkpoint {folder}: {why}", path=str(folder)
                )
            wanted = self.cfg.checkpoint.resume_step
            steps = [step for step, _ in scan.complete]
            if wanted >= 0 and wanted not in steps:
                chosen = -2
            elif steps:
                chosen = wanted if wanted >= 0 else steps[-1]
        chosen = _broadcast_int(chosen, self.device)
        if chosen == -2:
            message = f"is {self.cfg.checkpoint.resume_step} but {self.root} has no complete checkpoint of that step"
            raise ConfigError([Issue("checkpoint.resume_step", message)])
        return chosen

    def resume(self) -> None:
        """Continue from the latest complete checkpoint of the run directory, if there is one."""
        step = self._choose_checkpoint()
        if step < 0:
            return
        folder = checkpoint_path(self.root, step)
        state = load_checkpoint(folder, self.trained.model, self.optimizer, self.scheduler, step)
        self.order.load_state_dict(state.sampler)
        stored = int(state.sampler["num_samples"])
        if stored != self.order.num_samples:
            message = (
                f"the dataset has {self.order.num_samples} clips of this length now, {stored} when the "
                "checkpoint was written: the sample order after the resume differs from an uninterrupted run"
            )
            self.ctx.emit_run("warning", message=message, path=str(self.dataset.root))
        self.step, self.losses, self.saved_step = step, state.losses.tolist(), step
        self.ctx.emit_run("train.resumed", step=step, checkpoint=str(folder))

    # ---------------------------------------------------------------------------------------------
    # steps and checkpoints

    def save(self, final: bool) -> Path:
        started = time.perf_counter()
        losses = torch.tensor(self.losses, dtype=torch.float64)
        state = TrainingState(self.step, losses, self.order.state_dict())
        rank = self.ctx.topology.rank
        folder = save_checkpoint(self.root, self.trained.model, self.optimizer, self.scheduler, state, rank)
        if rank == 0:
            prune_checkpoints(self.root, self.cfg.checkpoint.keep)
            write_loss_curve(self.ctx.run.file("lossCurve"), self.losses)
        seconds = round(time.perf_counter() - started, 3)
        self.ctx.emit_run(
            "checkpoint.written", step=self.step, path=str(folder), seconds=seconds, final=final
        )
        self.saved_step = self.step
        return folder

    def next_batch(self) -> Batch:
        """This rank's batch of the next step (its clips from the sampler, its draws from the step's seed)."""
        indices = self.order.indices(self.dp_rank, self.dp_world, self.local_batch)
        clips = [self.dataset.clips[i] for i in indices]
        return draw_batch(self.dataset, clips, self.cfg, self.step, self.dp_rank, self.dp_world)

    def _one_step(self) -> tuple[StepResult, int]:
        batch = self.next_batch()
        result = train_step(self.trained, self.optimizer, self.scheduler, batch, self.cfg, self.step + 1)
        self.order.advance(self.cfg.training.global_batch_size)
        self.step += 1
        self.losses.append(result.loss)
        patch = self.trained.model.config.patch_size
        frames, _, height, width = batch.latents.shape[1:]
        tokens = batch.text.shape[1] * batch.text.shape[2] + frames * (height // patch) * (width // patch)
        return result, tokens * self.cfg.training.global_batch_size

    def run(self, started: float) -> Path:
        """Train to ``training.steps``; returns the final checkpoint (``started``: the run's start time)."""
        total, interval = self.cfg.training.steps, self.cfg.checkpoint.interval
        recent: deque[float] = deque(maxlen=RECENT_STEPS)
        gc.disable()  # collected every training.gc_freq steps, as in the reference
        try:
            while self.step < total:
                began = time.perf_counter()
                result, tokens = self._one_step()
                seconds = time.perf_counter() - began
                recent.append(seconds)
                self.ctx.emit_run(
                    "train.step",
                    step=self.step,
                    steps=total,
                    loss=result.loss,
                    lr=result.lr,
                    grad_norm=result.grad_norm,
                    tokens_per_second=round(tokens / seconds, 3),
                    seconds_per_step=round(seconds, 4),
                    elapsed=round(time.perf_counter() - started, 3),
                    eta=round(sum(recent) / len(recent) * (total - self.step), 3),
                )
                if self.step % self.cfg.training.gc_freq == 0:
                    gc.collect(1)
                if interval and self.step % interval == 0 and self.step < total:
                    self.save(final=False)
        finally:
            gc.enable()
        if self.saved_step != self.step:
            return self.save(final=True)
        if self.step > total:
            message = f"the run's latest checkpoint is of step {self.step}, beyond training.steps = {total}"
            self.ctx.emit_run("warning", message=message, path=str(checkpoint_path(self.root, self.step)))
        if self.ctx.topology.rank == 0:
            write_loss_curve(self.ctx.run.file("lossCurve"), self.losses)
        return checkpoint_path(self.root, self.step)
