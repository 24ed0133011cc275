"""The two ways into a run entry point (sample, train, prepare), and the run directory they lead to.

* The TypeScript SDK prepares the run directory (config.toml, and the run's inputs) and passes
  ``--run-dir DIR`` alone.
* The research system's command lines work as they are: ``--job.config_file c.toml`` and
  ``--section.field=value`` overrides (contracts/overrides.py). The config is validated with the same
  rules, and the run directory is created here: ``--run-dir``, or a new one under
  ``<eval.output_dir | job.dump_folder>/<job.exp_name>/<run-id>``. An existing one is resumed only when
  it holds the same run.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import tomli_w

from .contracts.config import ConfigError, Issue, JobConfig, config_to_dict, load_config
from .contracts.overrides import research_flags
from .contracts.run_dir import RunDirectory, config_differences, write_atomic


def config_toml(cfg: JobConfig) -> str:
    """The resolved config as TOML (fields that are null are left out: they read back as their default)."""
    sections = {
        s: {k: v for k, v in values.items() if v is not None} for s, values in config_to_dict(cfg).items()
    }
    return tomli_w.dumps(sections)


def _new_run_id() -> str:
    """Shared by the ranks of one torchrun launch (its rendezvous id), else a timestamp and random hex."""
    rendezvous = os.environ.get("TORCHELASTIC_RUN_ID")
    if rendezvous and rendezvous != "none":
        return rendezvous
    return time.strftime("%Y-%m-%dT%H-%M-%S") + "-" + secrets.token_hex(3)


def _fresh_run_dir(cfg: JobConfig, kind: str) -> Path:
    root = cfg.eval.output_dir if kind == "sample" else cfg.job.dump_folder
    return Path(root) / cfg.job.exp_name / _new_run_id()


def _check_same_run(run: RunDirectory, cfg: JobConfig) -> None:
    existing = run.file("config")
    if not existing.is_file():
        return
    differences = config_differences(load_config(existing), cfg)
    if differences:
        message = (
            f"{run.path} holds another run ({'; '.join(differences)}); pass a new run directory or delete it"
        )
        raise ConfigError([Issue("run_dir", message)])


def resolve_run(
    kind: str, run_dir: Path | None, argv: list[str], world_size: int
) -> tuple[JobConfig, RunDirectory]:
    """The validated config and the run directory of a run entry point; ``argv`` holds the research flags.

    With no flags the run directory must have been prepared (its config.toml is the config).
    """
    config_file, sets, rest = research_flags(argv)
    if rest:
        raise ConfigError([Issue("", f"unknown argument {rest[0]!r}; flags look like --section.field=value")])
    if config_file is None and not sets:
        if run_dir is None:
            raise ConfigError(
                [Issue("", "give --run-dir DIR (prepared by ttt-video) or --job.config_file FILE")]
            )
        if not RunDirectory.exists(run_dir):
            message = (
                f"the run directory {run_dir} does not exist; give one that ttt-video prepared, "
                "or the research flags (--job.config_file FILE --section.field=value ...)"
            )
            raise ConfigError([Issue("run_dir", message)])
        run = RunDirectory(run_dir)  # its paths were checked when it was prepared; loading names missing ones
        return load_config(run.file("config"), world_size=world_size, run_kind=kind), run
    cfg = load_config(config_file, sets, world_size=world_size, run_kind=kind, check_paths=True)
    run = RunDirectory(run_dir or _fresh_run_dir(cfg, kind), create=True)
    _check_same_run(run, cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        write_atomic(run.file("config"), config_toml(cfg))
    return cfg, run


def write_inputs_once(run: RunDirectory, name: str, lines: list[dict | list]) -> None:
    """Writes a run's input file (rank 0), or checks that the one there holds the same lines."""
    path = run.file(name)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if path.is_file():
        if path.read_text(encoding="utf-8") != text:
            message = f"{path} holds other inputs than this run's; pass a new run directory or delete it"
            raise ConfigError([Issue("run_dir", message)])
        return
    if int(os.environ.get("RANK", "0")) == 0:
        write_atomic(path, text)
