"""`python -m ttt_video COMMAND`: the Python entry points the TypeScript SDK drives."""

from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, config_to_dict, load_config, segment_count
from .storyboard import StoryboardError, check_segment_counts, read_storyboard_file, segment_prompts


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor_report

    report = doctor_report(args.disk_path)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        torch = report["torch"]
        print(f"python  {report['python']['version']} ({report['python']['executable']})")
        print(f"torch   {torch.get('version', torch.get('error'))}  cuda={torch.get('cuda_available')}")
        for gpu in torch.get("gpus", []):
            print(f"gpu {gpu['index']}   {gpu['name']} {gpu['memory_gib']} GiB")
        print(f"ffmpeg  {report['ffmpeg'].get('path')}")
        print(f"disk    {report['disk']['free_gib']} GiB free at {report['disk']['path']}")
    return 0


def _config_validate(args: argparse.Namespace) -> int:
    results = []
    status = 0
    for path in args.files:
        try:
            cfg = load_config(
                path, args.set or None, world_size=args.world_size, check_paths=args.check_paths
            )
            results.append({"file": path, "ok": True, "config": config_to_dict(cfg)})
        except ConfigError as e:
            status = 1
            results.append(
                {"file": path, "ok": False, "issues": [i.to_dict() for i in e.issues], "message": str(e)}
            )
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(f"{r['file']}: ok" if r["ok"] else r["message"], file=sys.stdout if r["ok"] else sys.stderr)
    return status


def _storyboard_check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.set or None)
        videos = read_storyboard_file(args.file)
        n = segment_count(cfg)
        assert n is not None  # load_config enforced T = 12n + 1
        check_segment_counts(videos, n, args.file)
    except (ConfigError, StoryboardError) as e:
        if args.json:
            print(json.dumps({"ok": False, "issues": [i.to_dict() for i in e.issues], "message": str(e)}))
        else:
            print(str(e), file=sys.stderr)
        return 1
    prompts = [segment_prompts(v) for v in videos]
    if args.json:
        out = [{"prompts": p.prompts, "negative_prompts": p.negative_prompts} for p in prompts]
        print(json.dumps({"ok": True, "videos": out}))
    else:
        print(f"{args.file}: {len(videos)} video(s) of {n} segment(s)")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .checkpoints import ConversionError, convert_diffusers

    def progress(event: dict) -> None:
        if args.json_progress:
            print(json.dumps(event), flush=True)
        elif event["type"] == "convert.progress":
            print(
                f"\rconverting: {event['done']}/{event['total']} tensors", end="", file=sys.stderr, flush=True
            )
        elif event["type"] == "convert.finished":
            print(
                f"\nwrote {event['path']} ({event['shards']} shard(s), {event['seconds']} s)", file=sys.stderr
            )

    try:
        convert_diffusers(
            args.source,
            args.out,
            ssm_layer=args.ssm_layer,
            seed=args.seed,
            max_shard_bytes=int(args.shard_size_gb * 2**30),
            link=not args.copy,
            progress=progress,
        )
    except (ConversionError, FileNotFoundError) as e:
        print(f"convert: {e}", file=sys.stderr)
        return 1
    return 0


def _make_tiny_bundle(args: argparse.Namespace) -> int:
    from .tiny_bundle import make_tiny_bundle

    path = make_tiny_bundle(args.out, seed=args.seed, ssm_layer=args.ssm_layer)
    print(path)
    return 0


def _table(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .sampling import step_table

    cfg = load_config(args.config, args.set or None)
    rows = step_table(
        cfg.eval.num_denoising_steps,
        shift_scale=cfg.discretization.shift_scale,
        guidance_scale=cfg.guider.scale,
        guidance_exp=cfg.guider.exp,
        guidance_schedule=cfg.guider.schedule,
        sampler=cfg.eval.sampler,
        timestep_bf16=cfg.faithfulness.timestep_bf16,
        quantize_c_noise=cfg.denoiser.quantize_c_noise,
        sigma_quantization=cfg.faithfulness.sigma_quantization,
    )
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
        return 0
    print(" step     t  t_model        a   a_next  idx      a_q   scale")
    for r in rows:
        print(
            f"{r.index:5d} {r.timestep:5d} {r.model_timestep:8.1f} {r.a:8.6f} {r.a_next:8.6f} "
            f"{r.quantized_index:4d} {r.a_q:8.6f} {r.guidance_scale:7.4f}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ttt_video", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="report Python, torch, CUDA, GPUs, ffmpeg and disk")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument("--disk-path", default=".")
    doctor.set_defaults(run=_doctor)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", help="validate TOML configs against the shared schema")
    validate.add_argument("files", nargs="+")
    validate.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE")
    validate.add_argument("--world-size", type=int)
    validate.add_argument("--check-paths", action="store_true")
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(run=_config_validate)

    storyboard = sub.add_parser("storyboard", help="storyboard tools")
    storyboard_sub = storyboard.add_subparsers(dest="storyboard_command", required=True)
    check = storyboard_sub.add_parser("check", help="validate a storyboard against a config")
    check.add_argument("file")
    check.add_argument("--config", required=True)
    check.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=_storyboard_check)

    convert = sub.add_parser("convert", help="convert a diffusers CogVideoX snapshot into a TTT-Video bundle")
    convert.add_argument(
        "--from", dest="source", required=True, help="CogVideoX snapshot or its transformer/"
    )
    convert.add_argument("--out", required=True, help="the bundle folder to write")
    convert.add_argument("--ssm-layer", choices=("ttt_mlp", "ttt_linear", "none"), default="ttt_mlp")
    convert.add_argument("--seed", type=int, default=0, help="seed of the new TTT parameters")
    convert.add_argument("--shard-size-gb", type=float, default=5.0)
    convert.add_argument(
        "--copy", action="store_true", help="copy vae/, text_encoder/, tokenizer/ (default: link)"
    )
    convert.add_argument("--json-progress", action="store_true", help="progress as JSON lines on stdout")
    convert.set_defaults(run=_convert)

    table = sub.add_parser(
        "table", help="the sampler's per-step table (t, a, quantised index, guidance scale)"
    )
    table.add_argument("--config", help="a TOML config (default: the defaults)")
    table.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE")
    table.add_argument("--json", action="store_true")
    table.set_defaults(run=_table)

    from .sample import add_parser as add_sample_parser

    add_sample_parser(sub)

    tiny = sub.add_parser(
        "make-tiny-bundle", help="build the tiny random-weight bundle used by tests and the demo"
    )
    tiny.add_argument("out")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--ssm-layer", choices=("ttt_mlp", "ttt_linear", "none"), default="ttt_mlp")
    tiny.set_defaults(run=_make_tiny_bundle)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
