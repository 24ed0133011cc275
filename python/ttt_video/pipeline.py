"""One video, storyboard in, mp4 out, as named steps: inputs -> text -> latents -> denoise -> decode -> write.

``generate_video`` reads as the list of steps; each step is a function below. The models come from
``ttt_video.loading.load_models``; the ``sample`` entry point wraps this for torchrun. The denoiser calls
``models.velocity`` (a ``GraphedModel`` replaying CUDA graphs, see ``use_cuda_graphs``) or the DiT.

PyAV is imported only to write the mp4. With ``TTT_VIDEO_DISCARD_VIDEO=1`` in the environment (for
machines without PyAV, such as scripts/device-check's GPU machine) the frames are decoded and dropped: no
video.mp4 and no meta.json are written, so the video does not count as finished.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .contracts.config import JobConfig, segment_count
from .contracts.run_dir import RunDirectory, output_identity
from .contracts.storyboard import SegmentPrompts, Video, segment_prompts
from .loading import PipelineModels
from .runner import NonFiniteError
from .sampling import guided_denoiser, initial_noise, sample, step_table_for, video_generator
from .sampling.graphs import GraphedModel, cuda_graph_recorder, cuda_graphs_enabled
from .vae import latent_windows

Emit = Callable[..., Any]
DISCARD_VIDEO_ENV = "TTT_VIDEO_DISCARD_VIDEO"


def discard_video() -> bool:
    """Whether decoded frames are dropped instead of written (``TTT_VIDEO_DISCARD_VIDEO=1``)."""
    return os.environ.get(DISCARD_VIDEO_ENV, "") == "1"


def check_video_writer() -> None:
    """Writing videos needs PyAV: say so before any model is loaded, not after sampling."""
    if not discard_video() and importlib.util.find_spec("av") is None:
        raise RuntimeError(
            "PyAV (the av package) is not installed, and it writes video.mp4: pip install av. To time a run "
            f"on a machine without it, set {DISCARD_VIDEO_ENV}=1 (frames are decoded and dropped)"
        )


def use_cuda_graphs(models: PipelineModels, cfg: JobConfig) -> bool:
    """Sets ``models.velocity`` to a ``GraphedModel`` of the DiT when ``eval.cuda_graphs`` says so for this
    device and layout (see ``cuda_graphs_enabled``); returns whether it did."""
    p = cfg.parallelism
    sharded = p.tp_sharding > 1 or p.dp_sharding > 1
    if not cuda_graphs_enabled(cfg.eval.cuda_graphs, models.device, sharded):
        models.velocity = None
        return False
    models.velocity = GraphedModel(models.dit, cuda_graph_recorder(), models.device)
    return True


@dataclass
class VideoJob:
    """What one video needs and what it has produced so far (timings fill in as the steps run)."""

    index: int
    video: Video
    prompts: SegmentPrompts
    frames: int  # latent frames T
    timings: dict[str, Any] = field(default_factory=dict)


def video_inputs(
    cfg: JobConfig, video: Video, index: int, run: RunDirectory, emit: Emit, write: bool
) -> VideoJob:
    """Step 1: the prompts with scene tokens, the folder (emptied of an unfinished attempt), prompt.txt."""
    job = VideoJob(index, video, segment_prompts(video), cfg.eval.sampling_num_frames)
    emit("video.started", video=index, segments=segment_count(cfg), frames=4 * (job.frames - 1) + 1)
    if write:
        run.prepare_video(index)
        run.write_prompt(index, job.prompts.prompts)
    return job


def encode_text(models: PipelineModels, cfg: JobConfig, job: VideoJob, emit: Emit):
    """Step 2: T5 of the positive and negative prompts, (1, n, L, D) each; warns of truncated prompts."""
    started = time.perf_counter()
    length = cfg.eval.txt_maxlen
    for j, tokens in enumerate(models.text.token_counts(job.prompts.prompts)):
        if tokens > length:
            message = (
                f"is {tokens} tokens long; T5 reads the first {length} (eval.txt_maxlen), the rest is cut"
            )
            emit("warning", message=message, path=f"video[{job.index}].segment[{j}].text")
    cond = models.text.encode(job.prompts.prompts, length).unsqueeze(0).to(models.dit_dtype)
    uncond = models.text.encode(job.prompts.negative_prompts, length).unsqueeze(0).to(models.dit_dtype)
    job.timings["text_seconds"] = round(time.perf_counter() - started, 3)
    return cond, uncond


def initial_latents(models: PipelineModels, cfg: JobConfig, job: VideoJob):
    """Step 3: the video's own generator (from job.seed and its index) and its first draw, x_T."""
    generator = video_generator(cfg.job.seed, job.index)
    ev = cfg.eval
    shape = (1, job.frames, ev.latent_channels, ev.image_height // 8, ev.image_width // 8)
    return generator, initial_noise(shape, generator, models.device)


def _velocity_model(models: PipelineModels, cfg: JobConfig):
    """The DiT (or its GraphedModel), run as one guidance branch per rank when the mesh has a cfg dimension."""
    model = models.velocity if models.velocity is not None else models.dit
    if models.mesh is not None:
        from .parallel import CfgParallel, submesh

        cfg_mesh = submesh(models.mesh, "cfg")
        if cfg_mesh is not None:
            return CfgParallel(model, cfg_mesh), True
    return model, cfg.eval.cfg_batch


def denoise(models: PipelineModels, cfg: JobConfig, job: VideoJob, text, noise, generator, emit: Emit):
    """Step 4: the sampler over the step table; x0 of every step must be finite."""
    table = step_table_for(cfg)
    model, cfg_batch = _velocity_model(models, cfg)
    guided = guided_denoiser(model, *text, table, model_dtype=models.dit_dtype, cfg_batch=cfg_batch)

    def checked(x, a, model_timestep, step):
        x0 = guided(x, a, model_timestep, step)
        if not torch.isfinite(x0).all():
            raise NonFiniteError(
                f"video {job.index}: the prediction of step {step + 1} (timestep {table[step].timestep}) holds NaN "
                "or infinite values; the model's weights are broken or the settings unstable (try float32)"
            )
        return x0

    step_times: list[float] = []
    started = last = time.perf_counter()

    def on_step(step: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        step_times.append(round(now - last, 4))
        last, elapsed = now, now - started
        eta = round(elapsed / (step + 1) * (total - step - 1), 3)
        emit("step", video=job.index, index=step, total=total, elapsed=round(elapsed, 3), eta=eta)

    latents = sample(checked, noise, table, generator, sampler=cfg.eval.sampler, callback=on_step)
    job.timings.update(sampling_seconds=round(time.perf_counter() - started, 3), seconds_per_step=step_times)
    return latents


def decode_to_mp4(
    models: PipelineModels, cfg: JobConfig, job: VideoJob, latents, run: RunDirectory, emit: Emit
):
    """Step 5: the VAE, window by window, each window's frames appended to the mp4 at once (or dropped,
    see ``discard_video``). Returns the number of frames."""
    ev = cfg.eval
    z = latents.to(models.text_dtype).permute(0, 2, 1, 3, 4)
    total = len(latent_windows(job.frames))
    window_times: list[float] = []
    frame_count = 0
    started = window_started = time.perf_counter()
    with _video_writer(run.video_file(job.index), ev) as write:
        for i, frames in enumerate(models.vae.decode_stream(z, latent_scale=ev.vae_scale_factor)):
            write(frames)
            frame_count += int(frames.shape[2])
            window_times.append(round(time.perf_counter() - window_started, 4))
            elapsed = round(time.perf_counter() - started, 3)
            emit(
                "decode.window",
                video=job.index,
                index=i,
                total=total,
                frames=int(frames.shape[2]),
                elapsed=elapsed,
            )
            window_started = time.perf_counter()
    job.timings.update(
        decode_seconds=round(time.perf_counter() - started, 3), seconds_per_window=window_times
    )
    return frame_count


@contextlib.contextmanager
def _video_writer(path, ev) -> Iterator[Callable[[torch.Tensor], None]]:
    """``write(frames (1, 3, f, H, W) in [-1, 1])`` appending to the mp4 at ``path`` (finished on leaving),
    or, with ``discard_video()``, copying them to the host and dropping them."""
    if discard_video():
        yield lambda frames: frames.cpu()
        return
    from .video_io import Mp4Writer, frames_to_uint8

    with Mp4Writer(path, ev.sampling_fps, ev.image_width, ev.image_height) as writer:
        yield lambda frames: writer.write(frames_to_uint8(frames))


def write_meta(
    models: PipelineModels, cfg: JobConfig, job: VideoJob, frame_count: int, run: RunDirectory, emit: Emit
):
    """Step 6: video.written, then meta.json (written last: it marks the folder complete)."""
    ev = cfg.eval
    facts = {
        "video": job.index,
        "frames": frame_count,
        "fps": ev.sampling_fps,
        "seconds": round(frame_count / ev.sampling_fps, 3),
    }
    emit("video.written", path=str(run.video_file(job.index)), **facts)
    meta = {
        **facts,
        "seed": cfg.job.seed,
        "segments": segment_count(cfg),
        "width": ev.image_width,
        "height": ev.image_height,
        "prompts": job.prompts.prompts,
        "negative_prompts": job.prompts.negative_prompts,
        "sampler": ev.sampler,
        "steps": ev.num_denoising_steps,
        "guidance_schedule": cfg.guider.schedule,
        "latent_scale": ev.vae_scale_factor,
        "model": _model_meta(models, cfg),
        "device": str(models.device),
        "identity": output_identity(cfg, job.video, models.fingerprint),
        "timings": job.timings,
    }
    run.write_meta(job.index, meta)
    return meta


def _model_meta(models: PipelineModels, cfg: JobConfig) -> dict[str, Any]:
    config = models.dit.config
    return {
        "ssm_layer": config.ssm_layer,
        "model_dim": config.model_dim,
        "num_layers": config.num_layers,
        "bundle": cfg.checkpoint.model_dir,
        "fingerprint": models.fingerprint,
        "bundle_latent_scale": models.bundle.get("latent_scale"),
        "bundle_source": models.bundle.get("source"),
    }


@torch.inference_mode()
def generate_video(models, cfg, video, index, run: RunDirectory, emit: Emit, *, write: bool = True):
    """Samples one video into ``run``'s folder ``video-<index>``; returns its meta.json content.

    ``write=False`` is for the peers of the writer in a tensor- or CFG-parallel group (and for the filler
    rounds of FSDP ranks that ran out of videos): it runs the same sampling, collectives included, and
    touches no file; it returns None.
    """
    started = time.perf_counter()
    job = video_inputs(cfg, video, index, run, emit, write)
    text = encode_text(models, cfg, job, emit)
    generator, noise = initial_latents(models, cfg, job)
    latents = denoise(models, cfg, job, text, noise, generator, emit)
    if not write:
        return None
    frame_count = decode_to_mp4(models, cfg, job, latents, run, emit)
    job.timings["total_seconds"] = round(time.perf_counter() - started, 3)
    if discard_video():
        message = (
            f"{frame_count} frames decoded and dropped ({DISCARD_VIDEO_ENV}=1): no video.mp4, no meta.json"
        )
        emit("warning", message=message, path=f"video[{index}]")
        emit("video.finished", video=index, seconds=job.timings["total_seconds"])
        return None
    meta = write_meta(models, cfg, job, frame_count, run, emit)
    emit("video.finished", video=index, seconds=job.timings["total_seconds"])
    return meta
