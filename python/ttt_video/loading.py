"""The models a sampling run needs (the DiT, the VAE decoder, T5), loaded as the job config says.

Sources: ``checkpoint.model_dir`` (a bundle, contract 4), optionally ``checkpoint.init_state_dir`` (DCP
weights for the DiT), ``eval.vae_checkpoint_path`` (a SAT VAE) and ``eval.t5_model_dir`` (a folder with
tokenizer/ and text_encoder/). With a mesh whose layout shards the DiT (tensor parallel, or FSDP over
dp_sharding > 1) the DiT is built sharded and each rank reads only its pieces.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .contracts.bundle import read_bundle_info
from .contracts.config import ConfigError, Issue, JobConfig, dtype_quirk
from .models import DiTConfig, TTTVideoDiT, build_config
from .runner import NonFiniteError
from .text import TextEncoder
from .vae import CogVideoXVAE
from .weights.dcp import load_dcp_weights
from .weights.dit_files import dit_fingerprint, read_dit_config, transformer_folder
from .weights.errors import WeightsMissingError

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
CONVERT_HINT = "convert the CogVideoX-5b snapshot with `ttt-video convert` to get a complete bundle"
Emit = Callable[..., Any]


@dataclass
class PipelineModels:
    dit: TTTVideoDiT
    vae: CogVideoXVAE
    text: TextEncoder
    device: torch.device
    dit_dtype: torch.dtype
    text_dtype: torch.dtype
    bundle: dict[str, Any]
    fingerprint: str  # of the DiT's weights: part of every video's identity
    mesh: Any = None  # the DeviceMesh of a parallel run (ttt_video.parallel.build_mesh), else None
    # What the sampler calls: a GraphedModel of dit (pipeline.use_cuda_graphs), or None for dit itself.
    velocity: Any = None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError([Issue("job.device", "is cuda but torch sees no CUDA device; use auto or cpu")])
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def dit_config_for_job(base: DiTConfig, cfg: JobConfig) -> DiTConfig:
    """The bundle's architecture with the job's TTT hyper-parameters and faithfulness switches."""
    if cfg.model.ssm_layer != base.ssm_layer:
        message = (
            f"is {cfg.model.ssm_layer!r} but the model bundle was converted with {base.ssm_layer!r}; set "
            f"model.ssm_layer = {base.ssm_layer!r} or convert again with --ssm-layer {cfg.model.ssm_layer}"
        )
        raise ConfigError([Issue("model.ssm_layer", message)])
    f = cfg.faithfulness
    return dataclasses.replace(
        base,
        ttt_base_lr=cfg.model.ttt_base_lr,
        mini_batch_size=cfg.model.mini_batch_size,
        ttt_lr_alignment=f.ttt_lr_alignment,
        reverse_pairing=f.reverse_pairing,
        timestep_bf16=dtype_quirk(cfg, f.timestep_bf16),
        rope_bf16=dtype_quirk(cfg, f.rope_bf16),
        ttt_kernel=cfg.model.ttt_kernel,
    )


def _require_dir(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise WeightsMissingError(f"{what} not found at {path}; {hint}")
    return path


@contextmanager
def _loading(emit: Emit, component: str) -> Iterator[None]:
    emit("model.loading", component=component)
    started = time.perf_counter()
    yield
    emit("model.loaded", component=component, seconds=round(time.perf_counter() - started, 3))


def check_finite_parameters(model: torch.nn.Module, source: str) -> None:
    """NaN or infinite weights give black or noise videos; refuse them naming the first bad tensor."""
    for name, p in model.named_parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        if not torch.isfinite(local).all():
            raise NonFiniteError(
                f"{source}: the weight {name} holds NaN or infinite values; the file is damaged"
            )


def _dit_base(cfg: JobConfig, bundle: Path | None) -> DiTConfig:
    if bundle is not None and (bundle / "transformer" / "config.json").is_file():
        return read_dit_config(transformer_folder(bundle))
    if cfg.checkpoint.init_state_dir is not None:
        return build_config(cfg.model.size, ssm_layer=cfg.model.ssm_layer)
    raise WeightsMissingError(f"{bundle}/transformer/config.json not found; {CONVERT_HINT}")


def load_dit(cfg: JobConfig, bundle: Path | None, device: torch.device, mesh: Any) -> TTTVideoDiT:
    dtype = DTYPES[cfg.parallelism.fsdp_unsharded_dtype]
    config = dit_config_for_job(_dit_base(cfg, bundle), cfg)
    dcp_dir = cfg.checkpoint.init_state_dir
    if dcp_dir is not None:
        _require_dir(Path(dcp_dir), "checkpoint.init_state_dir", "check the path")
    if mesh is not None:
        from .parallel import dims_of, load_parallel_dit

        dims = dims_of(mesh)
        dims.check_model(config)
        if dims.needs_parallel_model:
            source = None if dcp_dir is not None else bundle / "transformer"
            return load_parallel_dit(
                config, mesh, dtype=dtype, device=device, safetensors_dir=source, dcp_dir=dcp_dir
            )
    if dcp_dir is not None:
        dit = TTTVideoDiT.from_config(config, device=device, dtype=torch.float32)
        load_dcp_weights(dit, dcp_dir)
        return dit.to(dtype)
    return TTTVideoDiT.from_pretrained(bundle / "transformer", device=device, dtype=dtype, config=config)


def load_vae(cfg: JobConfig, bundle: Path | None, device: torch.device) -> CogVideoXVAE:
    dtype = DTYPES[cfg.eval.dtype]
    if cfg.eval.vae_checkpoint_path is not None:
        return CogVideoXVAE.from_sat_checkpoint(cfg.eval.vae_checkpoint_path, device=device, dtype=dtype)
    vae_dir = _require_dir(bundle / "vae" if bundle else Path("<no bundle>"), "the VAE (vae/)", CONVERT_HINT)
    return CogVideoXVAE.from_pretrained(vae_dir, device=device, dtype=dtype)


def load_text_encoder(cfg: JobConfig, bundle: Path | None, device: torch.device) -> TextEncoder:
    root = Path(cfg.eval.t5_model_dir) if cfg.eval.t5_model_dir else bundle
    if root is None:
        raise WeightsMissingError("no text encoder: set checkpoint.model_dir or eval.t5_model_dir")
    _require_dir(root / "text_encoder", "the T5 encoder (text_encoder/)", CONVERT_HINT)
    return TextEncoder.from_pretrained(root, device=device, dtype=DTYPES[cfg.eval.dtype])


def load_models(cfg: JobConfig, device: torch.device, emit: Emit, mesh: Any = None) -> PipelineModels:
    """The DiT, the VAE and T5 as the config says; each load is reported by model.loading/loaded."""
    if cfg.checkpoint.model_dir is None and cfg.checkpoint.init_state_dir is None:
        raise WeightsMissingError(
            "no model: set checkpoint.model_dir to a model bundle (see `ttt-video convert`), or use the demo model"
        )
    bundle = Path(cfg.checkpoint.model_dir) if cfg.checkpoint.model_dir else None
    if bundle is not None:
        _require_dir(bundle, "the model bundle (checkpoint.model_dir)", CONVERT_HINT)
    with _loading(emit, "transformer"):
        dit = load_dit(cfg, bundle, device, mesh).eval().requires_grad_(False)
        check_finite_parameters(dit, str(cfg.checkpoint.init_state_dir or bundle / "transformer"))
    with _loading(emit, "vae"):
        vae = load_vae(cfg, bundle, device).eval().requires_grad_(False)
    with _loading(emit, "text_encoder"):
        text = load_text_encoder(cfg, bundle, device)
    info = read_bundle_info(bundle) if bundle else {}
    fingerprint = weights_fingerprint(cfg)
    dtypes = DTYPES[cfg.parallelism.fsdp_unsharded_dtype], DTYPES[cfg.eval.dtype]
    return PipelineModels(dit, vae, text, device, *dtypes, info, fingerprint, mesh)


def weights_fingerprint(cfg: JobConfig) -> str:
    """The DiT weights' fingerprint: of the DCP checkpoint when one is loaded, else of the bundle's."""
    dcp_dir = cfg.checkpoint.init_state_dir
    if dcp_dir is None:
        if cfg.checkpoint.model_dir is None:
            raise WeightsMissingError(
                "no model: set checkpoint.model_dir to a model bundle (ttt-video convert)"
            )
        bundle = _require_dir(
            Path(cfg.checkpoint.model_dir), "the model bundle (checkpoint.model_dir)", CONVERT_HINT
        )
        if not (bundle / "transformer" / "config.json").is_file():
            raise WeightsMissingError(
                f"the model bundle (checkpoint.model_dir) {bundle} has no transformer/config.json; {CONVERT_HINT}"
            )
        return dit_fingerprint(transformer_folder(bundle))
    files = sorted(p for p in Path(dcp_dir).iterdir() if p.is_file())
    digest = hashlib.sha256((Path(dcp_dir) / ".metadata").read_bytes())
    for file in files:
        digest.update(f"{file.name}:{file.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def check_fits(models: PipelineModels, cfg: JobConfig) -> None:
    """The job's text width and latent grid must fit the loaded model."""
    dit = models.dit.config
    text_dim = models.text.width
    if text_dim != dit.text_dim:
        raise ConfigError(
            [
                Issue(
                    "eval.t5_model_dir",
                    f"the T5 encoder is {text_dim} wide but the DiT expects text_dim {dit.text_dim}",
                )
            ]
        )
    if cfg.eval.latent_channels != dit.in_channels:
        message = f"is {cfg.eval.latent_channels} but the DiT takes {dit.in_channels} channels"
        raise ConfigError([Issue("eval.latent_channels", message)])
