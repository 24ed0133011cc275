"""Storyboard in, frames out: scene tokens -> T5 -> sampler -> VAE (window by window) -> mp4.

`load_models` reads a model bundle (contract 4) as the job configuration says; `generate_video` makes one
video into its run-directory folder. The `sample` entry point wraps both for torchrun.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoints import load_dcp_weights, read_bundle_info
from .config import JobConfig, segment_count
from .models import DiTConfig, TTTVideoDiT, build_config
from .run_dir import RunDirectory
from .sampling import guided_denoiser, initial_noise, sample, step_table, video_generator
from .storyboard import Video, segment_prompts
from .text import TextEncoder
from .vae import CogVideoXVAE, latent_windows
from .video_io import Mp4Writer, frames_to_uint8

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
Emit = Callable[..., Any]


class WeightsMissingError(FileNotFoundError):
    """The configured model weights are not where the config says."""


class ModelConfigError(ValueError):
    """The job configuration does not fit the model bundle."""


@dataclass
class PipelineModels:
    dit: TTTVideoDiT
    vae: CogVideoXVAE
    text: TextEncoder
    device: torch.device
    dit_dtype: torch.dtype
    text_dtype: torch.dtype
    bundle: dict[str, Any]
    mesh: Any = None  # the DeviceMesh of a parallel run (ttt_video.parallel.build_mesh), else None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ModelConfigError("job.device = cuda but torch sees no CUDA device; use auto or cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def dit_config_for_job(base: DiTConfig, cfg: JobConfig) -> DiTConfig:
    """The bundle's architecture with the job's TTT hyper-parameters and faithfulness switches."""
    if cfg.model.ssm_layer != base.ssm_layer:
        raise ModelConfigError(
            f"model.ssm_layer = {cfg.model.ssm_layer!r} but the model bundle was converted with "
            f"{base.ssm_layer!r}; set model.ssm_layer = {base.ssm_layer!r} or convert again with "
            f"--ssm-layer {cfg.model.ssm_layer}"
        )
    f = cfg.faithfulness
    return dataclasses.replace(
        base,
        ttt_base_lr=cfg.model.ttt_base_lr,
        mini_batch_size=cfg.model.mini_batch_size,
        ttt_lr_alignment=f.ttt_lr_alignment,
        reverse_pairing=f.reverse_pairing,
        timestep_bf16=f.timestep_bf16,
        rope_bf16=f.rope_bf16,
    )


def _require_dir(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise WeightsMissingError(f"{what} not found at {path}; {hint}")
    return path


def load_models(cfg: JobConfig, device: torch.device, emit: Emit, mesh: Any = None) -> PipelineModels:
    """The DiT, the VAE and T5 as the config says: `checkpoint.model_dir` (a bundle), optionally
    `checkpoint.init_state_dir` (DCP weights for the DiT), `eval.vae_checkpoint_path` (SAT VAE) and
    `eval.t5_model_dir` (a folder with tokenizer/ and text_encoder/).

    With a `mesh` whose layout shards the DiT (tensor parallel, or FSDP over dp_sharding > 1) the DiT is
    built sharded and each rank reads only its pieces (`ttt_video.parallel.load_parallel_dit`); the
    layout is checked against the model before any weight is read. T5 and the VAE are replicated."""
    if cfg.checkpoint.model_dir is None and cfg.checkpoint.init_state_dir is None:
        raise WeightsMissingError(
            "no model: set checkpoint.model_dir to a model bundle (see `ttt-video convert`), "
            "or use the tiny demo bundle"
        )
    bundle = Path(cfg.checkpoint.model_dir) if cfg.checkpoint.model_dir else None
    convert_hint = "convert the CogVideoX-5b snapshot with `ttt-video convert` to get a complete bundle"
    if bundle is not None:
        _require_dir(bundle, "the model bundle (checkpoint.model_dir)", convert_hint)
    dit_dtype = DTYPES[cfg.parallelism.fsdp_unsharded_dtype]
    text_dtype = DTYPES[cfg.eval.dtype]

    emit("model.loading", component="transformer")
    started = time.perf_counter()
    config_file = bundle / "transformer" / "config.json" if bundle else None
    if config_file is not None and config_file.is_file():
        base = DiTConfig.from_dict(json.loads(config_file.read_text()))
    elif cfg.checkpoint.init_state_dir is not None:
        base = build_config(cfg.model.size, ssm_layer=cfg.model.ssm_layer)
    else:
        raise WeightsMissingError(f"{config_file} not found; {convert_hint}")
    dit_config = dit_config_for_job(base, cfg)
    parallel_dit = False
    if mesh is not None:
        # imported here: torch.distributed's FSDP and DTensor modules take a while to import
        from .parallel import dims_of, load_parallel_dit

        dims = dims_of(mesh)
        dims.check_model(dit_config)
        parallel_dit = dims.needs_parallel_model
    if parallel_dit:
        dcp_dir = cfg.checkpoint.init_state_dir
        if dcp_dir is not None:
            _require_dir(Path(dcp_dir), "checkpoint.init_state_dir", "check the path")
        dit = load_parallel_dit(
            dit_config,
            mesh,
            dtype=dit_dtype,
            device=device,
            safetensors_dir=None if dcp_dir is not None else bundle / "transformer",
            dcp_dir=dcp_dir,
        )
    elif cfg.checkpoint.init_state_dir is not None:
        dit = TTTVideoDiT.from_config(dit_config, device=device, dtype=torch.float32)
        load_dcp_weights(
            dit,
            _require_dir(Path(cfg.checkpoint.init_state_dir), "checkpoint.init_state_dir", "check the path"),
        )
        dit = dit.to(dit_dtype)
    else:
        dit = TTTVideoDiT.from_pretrained(
            bundle / "transformer", device=device, dtype=dit_dtype, config=dit_config
        )
    dit.eval().requires_grad_(False)
    emit("model.loaded", component="transformer", seconds=round(time.perf_counter() - started, 3))

    emit("model.loading", component="vae")
    started = time.perf_counter()
    if cfg.eval.vae_checkpoint_path is not None:
        vae = CogVideoXVAE.from_sat_checkpoint(cfg.eval.vae_checkpoint_path, device=device, dtype=text_dtype)
    else:
        vae_dir = _require_dir(
            bundle / "vae" if bundle else Path("<no bundle>"), "the VAE (vae/)", convert_hint
        )
        vae = CogVideoXVAE.from_pretrained(vae_dir, device=device, dtype=text_dtype)
    vae.eval().requires_grad_(False)
    emit("model.loaded", component="vae", seconds=round(time.perf_counter() - started, 3))

    emit("model.loading", component="text_encoder")
    started = time.perf_counter()
    text_root = Path(cfg.eval.t5_model_dir) if cfg.eval.t5_model_dir else bundle
    if text_root is None:
        raise WeightsMissingError("no text encoder: set checkpoint.model_dir or eval.t5_model_dir")
    _require_dir(text_root / "text_encoder", "the T5 encoder (text_encoder/)", convert_hint)
    text = TextEncoder.from_pretrained(text_root, device=device, dtype=text_dtype)
    emit("model.loaded", component="text_encoder", seconds=round(time.perf_counter() - started, 3))

    info = read_bundle_info(bundle) if bundle else {}
    return PipelineModels(dit, vae, text, device, dit_dtype, text_dtype, info, mesh)


def check_fits(models: PipelineModels, cfg: JobConfig) -> None:
    """The job's text width and latent grid must fit the loaded model."""
    dit = models.dit.config
    text_dim = models.text.model.config.d_model
    if text_dim != dit.text_dim:
        raise ModelConfigError(
            f"the T5 encoder is {text_dim} wide but the DiT expects text_dim {dit.text_dim}"
        )
    if cfg.eval.latent_channels != dit.in_channels:
        raise ModelConfigError(
            f"eval.latent_channels = {cfg.eval.latent_channels} but the DiT takes {dit.in_channels} channels"
        )


@torch.inference_mode()
def generate_video(
    models: PipelineModels,
    cfg: JobConfig,
    video: Video,
    index: int,
    run: RunDirectory,
    emit: Emit,
    *,
    write: bool = True,
) -> dict[str, Any] | None:
    """Samples one video into `run`'s folder `prompt-<index>`; returns its meta.json content.

    `write=False` is for the peers of the writer in a tensor- or CFG-parallel group (and for the filler
    rounds of FSDP ranks that ran out of videos): it runs the same sampling, collectives included, and
    touches no file; it returns None.
    """
    started = time.perf_counter()
    n = segment_count(cfg)
    T = cfg.eval.sampling_num_frames
    emit("prompt.started", video=index, segments=n, frames=4 * (T - 1) + 1)
    if write:
        run.prepare_video(index)
    prompts = segment_prompts(video)
    if write:
        run.write_prompt(index, prompts.prompts)

    length = cfg.eval.txt_maxlen
    text_started = time.perf_counter()
    cond = models.text.encode(prompts.prompts, length).unsqueeze(0).to(models.dit_dtype)
    uncond = models.text.encode(prompts.negative_prompts, length).unsqueeze(0).to(models.dit_dtype)
    text_seconds = time.perf_counter() - text_started

    ev = cfg.eval
    table = step_table(
        ev.num_denoising_steps,
        shift_scale=cfg.discretization.shift_scale,
        guidance_scale=cfg.guider.scale,
        guidance_exp=cfg.guider.exp,
        guidance_schedule=cfg.guider.schedule,
        sampler=ev.sampler,
        timestep_bf16=cfg.faithfulness.timestep_bf16,
        quantize_c_noise=cfg.denoiser.quantize_c_noise,
        sigma_quantization=cfg.faithfulness.sigma_quantization,
    )
    generator = video_generator(cfg.job.seed, index)
    shape = (1, T, ev.latent_channels, ev.image_height // 8, ev.image_width // 8)
    noise = initial_noise(shape, generator, models.device)
    model, cfg_batch = models.dit, ev.cfg_batch
    if models.mesh is not None:
        from .parallel import CfgParallel, submesh

        cfg_mesh = submesh(models.mesh, "cfg")
        if cfg_mesh is not None:
            # this rank runs one guidance branch; the pair is exchanged every step
            model, cfg_batch = CfgParallel(models.dit, cfg_mesh), True
    denoise = guided_denoiser(model, cond, uncond, table, model_dtype=models.dit_dtype, cfg_batch=cfg_batch)

    step_times: list[float] = []
    sampling_started = time.perf_counter()
    last = [sampling_started]

    def on_step(step: int, total: int) -> None:
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now
        elapsed = now - sampling_started
        emit(
            "step",
            video=index,
            index=step,
            total=total,
            elapsed=round(elapsed, 3),
            eta=round(elapsed / (step + 1) * (total - step - 1), 3),
        )

    latents = sample(denoise, noise, table, generator, sampler=ev.sampler, callback=on_step)
    sampling_seconds = time.perf_counter() - sampling_started
    if not write:
        return None

    z = latents.to(models.text_dtype).permute(0, 2, 1, 3, 4)
    windows = latent_windows(T)
    window_times: list[float] = []
    decode_started = time.perf_counter()
    out = run.video_file(index)
    with Mp4Writer(out, ev.sampling_fps, ev.image_width, ev.image_height) as writer:
        window_started = time.perf_counter()
        for i, frames in enumerate(models.vae.decode_stream(z, latent_scale=ev.vae_scale_factor)):
            writer.write(frames_to_uint8(frames))
            window_times.append(time.perf_counter() - window_started)
            emit(
                "decode.window",
                video=index,
                index=i,
                total=len(windows),
                frames=int(frames.shape[2]),
                elapsed=round(time.perf_counter() - decode_started, 3),
            )
            window_started = time.perf_counter()
        frame_count = writer.frames
    decode_seconds = time.perf_counter() - decode_started
    emit(
        "video.written",
        video=index,
        path=str(out),
        frames=frame_count,
        fps=ev.sampling_fps,
        seconds=round(frame_count / ev.sampling_fps, 3),
    )

    meta = {
        "video": index,
        "seed": cfg.job.seed,
        "frames": frame_count,
        "fps": ev.sampling_fps,
        "seconds": round(frame_count / ev.sampling_fps, 3),
        "segments": n,
        "width": ev.image_width,
        "height": ev.image_height,
        "prompts": prompts.prompts,
        "negative_prompts": prompts.negative_prompts,
        "sampler": ev.sampler,
        "steps": ev.num_denoising_steps,
        "guidance_schedule": cfg.guider.schedule,
        "latent_scale": ev.vae_scale_factor,
        "model": {
            "ssm_layer": models.dit.config.ssm_layer,
            "model_dim": models.dit.config.model_dim,
            "num_layers": models.dit.config.num_layers,
            "bundle": cfg.checkpoint.model_dir,
            "bundle_latent_scale": models.bundle.get("latent_scale"),
            "bundle_source": models.bundle.get("source"),
        },
        "device": str(models.device),
        "timings": {
            "total_seconds": round(time.perf_counter() - started, 3),
            "text_seconds": round(text_seconds, 3),
            "sampling_seconds": round(sampling_seconds, 3),
            "seconds_per_step": [round(t, 4) for t in step_times],
            "decode_seconds": round(decode_seconds, 3),
            "seconds_per_window": [round(t, 4) for t in window_times],
        },
    }
    run.write_meta(index, meta)
    emit("prompt.finished", video=index, seconds=meta["timings"]["total_seconds"])
    return meta
