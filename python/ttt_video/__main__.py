"""`python -m ttt_video COMMAND`: the Python entry points (long jobs are runs with events; see runner.py)."""

from __future__ import annotations

import sys

from .lifecycle import configure_threads, die_with_parent

configure_threads(launcher=sys.argv[1:2] == ["torchrun"])  # before torch is imported anywhere

import argparse  # noqa: E402
import json  # noqa: E402

from .contracts.config import InputError, config_to_dict, load_config, segment_count  # noqa: E402
from .contracts.storyboard import check_segment_counts, read_storyboard_file, segment_prompts  # noqa: E402


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor_report, format_report

    report = doctor_report(args.disk_path)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _print_outcome(ok: bool, payload: dict, text: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": ok, **payload}))
    else:
        print(text, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _config_validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            cfg = load_config(
                path, args.set or None, world_size=args.world_size, check_paths=args.check_paths
            )
            status |= _print_outcome(
                True, {"file": path, "config": config_to_dict(cfg)}, f"{path}: ok", args.json
            )
        except InputError as e:
            payload = {"file": path, "issues": [i.to_dict() for i in e.issues], "message": str(e)}
            status |= _print_outcome(False, payload, str(e), args.json)
    return status


def _storyboard_check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.set or None)
        videos = read_storyboard_file(args.file)
        check_segment_counts(videos, segment_count(cfg), args.file)
    except InputError as e:
        return _print_outcome(
            False, {"issues": [i.to_dict() for i in e.issues], "message": str(e)}, str(e), args.json
        )
    prompts = [segment_prompts(v) for v in videos]
    payload = {"videos": [{"prompts": p.prompts, "negative_prompts": p.negative_prompts} for p in prompts]}
    return _print_outcome(
        True, payload, f"{args.file}: {len(videos)} video(s) of {segment_count(cfg)} segment(s)", args.json
    )


def _table(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .sampling import format_step_table, step_table_for

    cfg = load_config(args.config, args.set or None)
    if args.json:
        print(json.dumps([asdict(r) for r in step_table_for(cfg)]))
    else:
        print(format_step_table(config_to_dict(cfg)))
    return 0


def _make_tiny_bundle(args: argparse.Namespace) -> int:
    from .demo.tiny_bundle import make_tiny_bundle

    print(make_tiny_bundle(args.out, seed=args.seed, ssm_layer=args.ssm_layer))
    return 0


def _torchrun(args: argparse.Namespace, argv: list[str]) -> int:
    """torchrun, ended when its parent dies (the launcher's SIGKILL leaves no worker holding GPUs)."""
    from torch.distributed.run import main as torchrun_main

    die_with_parent()
    torchrun_main(argv)
    return 0


def _add_tools(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="report Python, torch, CUDA, GPUs, ffmpeg and disk")
    p.add_argument("--json", action="store_true")
    p.add_argument("--disk-path", default=".")
    p.set_defaults(run=_doctor)
    config = sub.add_parser("config", help="configuration tools").add_subparsers(
        dest="config_command", required=True
    )
    p = config.add_parser("validate", help="validate TOML configs (the same rules as the TypeScript side)")
    p.add_argument("files", nargs="+")
    p.add_argument("--world-size", type=int)
    p.add_argument("--check-paths", action="store_true")
    p.set_defaults(run=_config_validate)
    board = sub.add_parser("storyboard", help="storyboard tools").add_subparsers(
        dest="storyboard_command", required=True
    )
    p = board.add_parser("check", help="validate a storyboard file against a config")
    p.add_argument("file")
    p.add_argument("--config", required=True)
    p.set_defaults(run=_storyboard_check)
    p = sub.add_parser("table", help="the sampler's per-step table (t, a, quantised index, guidance scale)")
    p.add_argument("--config", help="a TOML config (default: the defaults)")
    p.set_defaults(run=_table)
    for p in (config.choices["validate"], board.choices["check"], sub.choices["table"]):
        p.add_argument("--set", action="append", metavar="SECTION.FIELD=VALUE")
        p.add_argument("--json", action="store_true")
    p = sub.add_parser("make-tiny-bundle", help="build the tiny random-weight bundle of the tests")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ssm-layer", choices=("ttt_mlp", "ttt_linear", "none"), default="ttt_mlp")
    p.set_defaults(run=_make_tiny_bundle)
    p = sub.add_parser(
        "torchrun", help="torchrun with its arguments, ended when its parent dies", add_help=False
    )
    p.set_defaults(run=_torchrun, passthrough=True)


RUN_COMMANDS = ("sample", "convert", "prepare", "train", "export")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of ``command`` when it is a run command: a run imports
    only its own module (prepare's pulls in the data pipeline, sample's the sampler)."""
    import importlib

    parser = argparse.ArgumentParser(prog="python -m ttt_video", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    if command not in RUN_COMMANDS:
        _add_tools(sub)
    for name in RUN_COMMANDS if command not in RUN_COMMANDS else (command,):
        importlib.import_module(f".{name}", __package__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["torchrun"]:
        return _torchrun(argparse.Namespace(), argv[1:])
    parser = build_parser(argv[0] if argv else None)
    args, rest = parser.parse_known_args(argv)
    if args.command in RUN_COMMANDS:
        die_with_parent()  # a worker whose launcher is gone (even by SIGKILL) ends instead of holding GPUs
    if getattr(args, "research_flags", False):
        return args.run(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
