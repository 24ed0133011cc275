"""`python -m ttt_video convert --from SNAPSHOT --out BUNDLE [--run-dir DIR]`: weights conversion as a run.

With ``--run-dir`` (the TypeScript SDK passes one) progress and failures are events of that run
(``convert.progress``, ``convert.shard``, ``error``); without, progress is printed on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .contracts.config import InputError
from .contracts.run_dir import RunDirectory
from .runner import RunContext, run_entry


def _convert_in_run(ctx: RunContext, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    ctx.emit_run(
        "run.started", kind="convert", run_dir=str(ctx.run.path), world_size=1, device="cpu", total=0
    )
    _convert(args, ctx.events.emit)
    ctx.emit_run("run.finished", seconds=round(time.perf_counter() - started, 3))


def _convert(args: argparse.Namespace, emit) -> Path:
    from .weights.convert import convert_diffusers

    return convert_diffusers(
        args.source,
        args.out,
        ssm_layer=args.ssm_layer,
        seed=args.seed,
        max_shard_bytes=args.shard_bytes,
        link=not args.copy,
        emit=emit,
    )


def _print_progress(type: str, **fields) -> None:
    if type == "convert.progress":
        print(
            f"\rconverting: {fields['done']}/{fields['total']} tensors", end="", file=sys.stderr, flush=True
        )
    elif type == "convert.shard":
        print(f"\nwrote {fields['file']} ({fields['bytes']} bytes)", file=sys.stderr, flush=True)


def run_convert(args: argparse.Namespace) -> int:
    if args.run_dir is not None:
        return run_entry(RunDirectory(args.run_dir, create=True), lambda ctx: _convert_in_run(ctx, args))
    try:
        print(_convert(args, _print_progress))
    except (InputError, OSError, ValueError) as e:
        print(f"convert: {e}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a diffusers CogVideoX snapshot into a TTT-Video bundle")
    p.add_argument("--from", dest="source", required=True, help="CogVideoX snapshot or its transformer/")
    p.add_argument("--out", required=True, help="the bundle folder to write")
    p.add_argument("--ssm-layer", choices=("ttt_mlp", "ttt_linear", "none"), default="ttt_mlp")
    p.add_argument("--seed", type=int, default=0, help="seed of the new TTT parameters")
    p.add_argument("--shard-bytes", type=int, default=5 * 2**30, help="largest safetensors shard")
    p.add_argument("--copy", action="store_true", help="copy vae/, text_encoder/, tokenizer/ (default: link)")
    p.add_argument("--run-dir", type=Path, help="report as a run: events into DIR/events.jsonl")
    p.set_defaults(run=run_convert)
