"""`python -m ttt_video export CHECKPOINT BUNDLE [--from-bundle B]`: a model bundle from a training checkpoint.

``CHECKPOINT`` is a complete ``<run>/checkpoints/step-<N>/`` folder; the run's ``config.toml`` (two
folders up) gives the DiT's configuration, ``model.scale_factor`` and the bundle the run started from
(``checkpoint.model_dir``, or ``--from-bundle``). The new bundle holds ``transformer/`` (config.json and
safetensors of the checkpoint's master weights, in the run's compute dtype unless ``--dtype`` says
otherwise), ``vae/``, ``text_encoder/`` and ``tokenizer/`` linked (or copied) from the source bundle, and
``bundle.json`` with ``latent_scale = model.scale_factor``. It is written as ``BUNDLE.partial`` and renamed
when complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from .contracts.bundle import read_bundle_info, write_bundle_info
from .contracts.config import InputError, load_config
from .weights.errors import WeightsError, WeightsMissingError

COMPANIONS = ("vae", "text_encoder", "tokenizer")
DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _run_config(checkpoint: Path):
    from .training.checkpoints import verify_checkpoint

    if not checkpoint.is_dir():
        raise WeightsMissingError(f"{checkpoint} is not a folder; give a <run>/checkpoints/step-<N> folder")
    problem = verify_checkpoint(checkpoint)
    if problem is not None:
        raise WeightsError(f"{checkpoint} is not a complete training checkpoint: {problem}")
    config_file = checkpoint.parent.parent / "config.toml"
    if not config_file.is_file():
        raise WeightsMissingError(
            f"{config_file} not found: the checkpoint must sit in its run directory (<run>/checkpoints/step-<N>)"
        )
    return load_config(config_file)


def _source_bundle(cfg, from_bundle: Path | None) -> Path:
    source = from_bundle or (Path(cfg.checkpoint.model_dir) if cfg.checkpoint.model_dir else None)
    if source is None:
        raise WeightsMissingError(
            "the run has no checkpoint.model_dir to take vae/, text_encoder/ and tokenizer/ from; "
            "pass --from-bundle BUNDLE"
        )
    missing = [name for name in COMPANIONS if not (source / name).is_dir()]
    if missing:
        raise WeightsMissingError(
            f"{source} has no {', '.join(missing)}/; pass --from-bundle with a complete bundle"
        )
    return source


def _place_companions(source: Path, target: Path, copy: bool) -> None:
    for name in COMPANIONS:
        if copy:
            shutil.copytree(source / name, target / name)
        else:
            (target / name).symlink_to((source / name).resolve(), target_is_directory=True)


def export_bundle(
    checkpoint: Path,
    out: Path,
    *,
    from_bundle: Path | None = None,
    dtype: str | None = None,
    copy: bool = False,
) -> Path:
    """Writes the bundle ``out`` from the training checkpoint ``checkpoint``; returns ``out``."""
    from .models import TTTVideoDiT
    from .training.model_setup import training_dit_config
    from .weights.dcp import load_dcp_weights
    from .weights.dit_files import save_dit

    checkpoint, out = Path(checkpoint).absolute(), Path(out)
    cfg = _run_config(checkpoint)
    source = _source_bundle(cfg, from_bundle)
    if out.exists() and any(out.iterdir()):
        raise WeightsError(f"{out} exists and is not empty; choose a new folder for the bundle or delete it")
    config = training_dit_config(cfg)
    model = TTTVideoDiT.from_config(config, device="meta").to_empty(device="cpu")
    load_dcp_weights(model, checkpoint)
    model = model.to(DTYPE_NAMES[dtype or cfg.parallelism.fsdp_unsharded_dtype])
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    save_dit(model, config, partial / "transformer", max_shard_bytes=5 * 2**30)
    _place_companions(source, partial, copy)
    seed = read_bundle_info(source).get("seed") if (source / "bundle.json").is_file() else None
    write_bundle_info(
        partial,
        latent_scale=cfg.model.scale_factor,
        source=f"training checkpoint {checkpoint}",
        ssm_layer=config.ssm_layer,
        seed=seed,
    )
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return out


def run_export(args: argparse.Namespace) -> int:
    """Prints the bundle's path (with --json: one result or error line, as the TS side reads it)."""
    from .runner import error_code

    try:
        bundle = export_bundle(
            args.checkpoint, args.bundle, from_bundle=args.from_bundle, dtype=args.dtype, copy=args.copy
        )
    except (InputError, OSError, ValueError) as error:
        if args.json:
            print(json.dumps({"type": "error", "code": error_code(error), "message": str(error)}))
        else:
            print(f"export: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"type": "result", "bundle": str(bundle)}) if args.json else bundle)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model bundle from a training checkpoint")
    p.add_argument("checkpoint", type=Path, help="a complete <run>/checkpoints/step-<N> folder")
    p.add_argument("bundle", type=Path, help="the bundle folder to write (new or empty)")
    p.add_argument("--from-bundle", type=Path, help="take vae/, text_encoder/, tokenizer/ from this bundle "
                   "(default: the run's checkpoint.model_dir)")  # fmt: skip
    p.add_argument(
        "--dtype", choices=sorted(DTYPE_NAMES), help="weights dtype (default: the run's compute dtype)"
    )
    p.add_argument("--copy", action="store_true", help="copy the companion folders (default: link)")
    p.add_argument("--json", action="store_true", help="print one JSON line: the result or the error")
    p.set_defaults(run=run_export)
