"""The job configuration (contract 1): TOML in, validated against configs/schema/job.schema.json.

The schema is written from the TypeScript zod schema (`npm run schema`), which is the single source of
the fields and their defaults. This module adds nothing to it but the cross-field rules, which are the
same as sdk/config/rules.ts and report the same field paths.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jsonschema

from .config_types import SECTION_TYPES, JobConfig

SCHEMA_ENV = "TTT_VIDEO_CONFIG_SCHEMA"
FRAMES_PER_SEGMENT = 12
PIXELS_PER_TOKEN = 16
VIDEO_LENGTH_FRAMES = {"3sec": 13, "9sec": 37, "18sec": 73, "30sec": 121, "63sec": 253}
# Attention heads of the model presets (the architecture itself lives in ttt_video.models.presets).
PRESET_HEADS = {"5B": 48, "debug": 8, "tiny": 2}
PATH_FIELDS = [
    ("checkpoint", "model_dir"),
    ("checkpoint", "init_state_dir"),
    ("eval", "vae_checkpoint_path"),
    ("eval", "t5_model_dir"),
    ("eval", "input_file"),
    ("training", "dataset_path"),
    ("training", "jsonl_paths"),
]


@dataclass
class Issue:
    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class ConfigError(ValueError):
    """A config that cannot be used; `issues` name the field paths (the same as the TS side)."""

    def __init__(self, issues: list[Issue], file: str | os.PathLike | None = None):
        self.issues = issues
        self.file = str(file) if file is not None else None
        super().__init__(format_issues(self.file, issues))


def format_issues(file: str | None, issues: list[Issue]) -> str:
    lines = []
    for issue in issues:
        where = file or ("<input>" if issue.line is not None else None)
        if where is not None and issue.line is not None:
            where += f":{issue.line}" + (f":{issue.column}" if issue.column is not None else "")
        prefix = ": ".join(p for p in (where, issue.path) if p)
        lines.append(f"{prefix}: {issue.message}" if prefix else issue.message)
    return "\n".join(lines)


def schema_path() -> Path:
    override = os.environ.get(SCHEMA_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "configs" / "schema" / "job.schema.json"


def load_schema() -> dict[str, Any]:
    path = schema_path()
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"the config schema {path} is missing; run `npm run schema` in the ttt-video checkout "
            f"or set {SCHEMA_ENV}"
        ) from e
    return schema


def _job_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return schema["$defs"]["JobConfig"] if "$ref" in schema else schema


# ---------------------------------------------------------------------------------------------------
# Reading


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parses a TOML config file without validating it; errors name the file, line and column."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError([Issue("", "is a folder, not a TOML file")], path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError([Issue("", f"cannot read the config file ({e.strerror})")], path) from e
    return parse_config_text(data, path)


def parse_config_text(data: bytes | str, file: str | os.PathLike | None = None) -> dict[str, Any]:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line, column = _line_column(data[: e.start].decode("utf-8", errors="replace"))
            raise ConfigError(
                [Issue("", f"not valid UTF-8 (byte {e.start}); save the file as UTF-8", line, column)], file
            ) from None
        text = text.removeprefix("\ufeff")
    else:
        text = data
    if not text.strip():
        raise ConfigError([Issue("", "the config file is empty")], file)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        line = column = None
        # Python 3.11's message ends with "(at line L, column C)".
        if "(at line " in message:
            head, _, tail = message.rpartition(" (at line ")
            try:
                line_s, col_s = tail.rstrip(")").split(", column ")
                line, column = int(line_s), int(col_s)
                message = head
            except ValueError:
                pass
        raise ConfigError([Issue("", f"invalid TOML: {message}", line, column)], file) from None


def _line_column(prefix: str) -> tuple[int, int]:
    lines = prefix.split("\n")
    return len(lines), len(lines[-1]) + 1


# ---------------------------------------------------------------------------------------------------
# Overrides


def parse_set_args(args: list[str], schema: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """`section.field=value` strings -> a partial config, values coerced by the field's schema type."""
    job = _job_schema(schema or load_schema())
    out: dict[str, dict[str, Any]] = {}
    issues: list[Issue] = []
    for arg in args:
        key, eq, raw = arg.partition("=")
        parts = key.split(".")
        if not eq or len(parts) != 2 or not all(parts):
            issues.append(
                Issue(
                    key, f"--set {arg}: must look like section.field=value (e.g. model.ssm_layer=ttt_linear)"
                )
            )
            continue
        section, name = parts
        problem = locate_field(job, section, name)
        if problem:
            issues.append(Issue(key, f"{problem} (in --set {arg})"))
            continue
        field_schema = job["properties"][section]["properties"][name]
        value = _coerce(field_schema, raw)
        error = next(iter(jsonschema.Draft202012Validator(field_schema).iter_errors(value)), None)
        if error is not None:
            issues.append(Issue(key, f"{_describe_error(error)} (in --set {arg})"))
            continue
        out.setdefault(section, {})[name] = value
    if issues:
        raise ConfigError(issues)
    return out


def _coerce(field_schema: dict[str, Any], raw: str) -> Any:
    candidates: list[Any] = []
    if raw in ("null", "none", "None"):
        candidates.append(None)
    if raw in ("true", "false"):
        candidates.append(raw == "true")
    try:
        number = float(raw)
        if raw.strip() and number == number and abs(number) != float("inf"):
            candidates.append(
                int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
            )
    except ValueError:
        pass
    for candidate in candidates:
        if jsonschema.Draft202012Validator(field_schema).is_valid(candidate):
            return candidate
    return raw


def merge_config_objects(*sources: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for src in sources:
        for section, values in (src or {}).items():
            if isinstance(values, dict) and isinstance(out.get(section, {}), dict):
                out[section] = {**out.get(section, {}), **values}
            else:
                out[section] = values
    return out


# ---------------------------------------------------------------------------------------------------
# Validation


def locate_field(job: dict[str, Any], section: str, name: str | None = None) -> str | None:
    sections = list(job["properties"])
    if section not in sections:
        guess = closest(section, sections)
        hint = f"; did you mean [{guess}]?" if guess else f"; valid sections: {', '.join(sections)}"
        return f"unknown section [{section}]{hint}"
    if name is None:
        return None
    names = list(job["properties"][section]["properties"])
    if name in names:
        return None
    guess = closest(name, names)
    hint = (
        f"; did you mean {section}.{guess}?"
        if guess
        else f"; valid fields of [{section}]: {', '.join(names)}"
    )
    return f"unknown field {section}.{name}{hint}"


def closest(word: str, candidates: list[str]) -> str | None:
    """Same rule as sdk/text.ts: the nearest by edit distance, if close enough to be a typo."""
    best, best_distance = None, float("inf")
    for c in candidates:
        d = _edit_distance(word.lower(), c.lower())
        if d < best_distance:
            best, best_distance = c, d
    return best if best is not None and best_distance <= max(1, len(word) // 3) else None


def _edit_distance(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions (optimal string alignment)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _schema_issues(raw: dict[str, Any], job: dict[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    if not isinstance(raw, dict):
        return [Issue("", "the config must be a TOML document of [section] tables")]
    for section, values in raw.items():
        problem = locate_field(job, section)
        if problem:
            issues.append(Issue(section, problem))
        elif not isinstance(values, dict):
            issues.append(Issue(section, f"must be a table [{section}], not a single value"))
        else:
            for name in values:
                problem = locate_field(job, section, name)
                if problem:
                    issues.append(Issue(f"{section}.{name}", problem))
    if issues:
        return issues
    validator = jsonschema.Draft202012Validator(job)
    seen: set[str] = set()
    for error in sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(map(str, error.absolute_path))
        if path not in seen:  # one message per field (a wrong type also fails the enum, say)
            seen.add(path)
            issues.append(Issue(path, _describe_error(error)))
    return issues


def _describe_error(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum":
        return "expected one of " + "|".join(json.dumps(v) for v in error.validator_value)
    if error.validator == "const":
        return f"must be {json.dumps(error.validator_value)}"
    if error.validator == "type":
        return f"expected {error.validator_value}, got {type(error.instance).__name__} {error.instance!r}"
    if error.validator == "anyOf":
        return f"invalid value {error.instance!r}"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "minLength"):
        return (
            f"{error.instance!r} is too small"
            if error.validator != "maximum"
            else f"{error.instance!r} is too large"
        )
    return error.message


def _with_defaults(raw: dict[str, Any], job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, section_schema in job["properties"].items():
        values = dict(raw.get(section, {}))
        for name, field_schema in section_schema["properties"].items():
            values.setdefault(name, field_schema.get("default"))
        out[section] = values
    return out


def _to_typed(values: dict[str, dict[str, Any]]) -> JobConfig:
    sections = {}
    for section, cls in SECTION_TYPES.items():
        kwargs = {}
        for f in fields(cls):
            v = values[section][f.name]
            # TOML has no integer/float distinction for 1e6-style values; the schema said "integer".
            if f.type in ("int", "int | None") and isinstance(v, float) and v.is_integer():
                v = int(v)
            elif f.type == "float" and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            kwargs[f.name] = v
        sections[section] = cls(**kwargs)
    return JobConfig(**sections)


@dataclass
class RuleOptions:
    world_size: int | None = None
    check_paths: bool = False
    base_dir: Path | None = None


def segment_count(cfg: JobConfig) -> int | None:
    t = cfg.eval.sampling_num_frames
    n, rem = divmod(t - 1, FRAMES_PER_SEGMENT)
    return n if rem == 0 and n >= 1 else None


def tokens_per_frame(cfg: JobConfig) -> int:
    return (cfg.eval.image_height // PIXELS_PER_TOKEN) * (cfg.eval.image_width // PIXELS_PER_TOKEN)


def mesh_size(cfg: JobConfig) -> int:
    p = cfg.parallelism
    return p.dp_replicate * p.dp_sharding * p.tp_sharding * p.cfg_parallel


def check_rules(cfg: JobConfig, options: RuleOptions | None = None) -> list[Issue]:
    """The cross-field rules of sdk/config/rules.ts, with the same paths."""
    options = options or RuleOptions()
    issues: list[Issue] = []
    ev, model, par = cfg.eval, cfg.model, cfg.parallelism
    t = ev.sampling_num_frames
    n = segment_count(cfg)
    if n is None:
        lower = max(1, (t - 1) // FRAMES_PER_SEGMENT)
        issues.append(
            Issue(
                "eval.sampling_num_frames",
                f"must be 12n + 1 latent frames for n >= 1 segments (13, 25, 37, ...), got {t}; "
                f"use {lower * 12 + 1} or {(lower + 1) * 12 + 1}",
            )
        )
    for name in ("image_width", "image_height"):
        value = getattr(ev, name)
        if value % 16:
            issues.append(
                Issue(
                    f"eval.{name}",
                    "must be a multiple of 16 (8x VAE compression times the 2x2 patch), "
                    f"got {value}; use {max(16, round(value / 16) * 16)}",
                )
            )
    covered = VIDEO_LENGTH_FRAMES[model.video_length]
    if t > covered:
        fits = next((k for k, v in VIDEO_LENGTH_FRAMES.items() if v >= t), None)
        hint = f'use "{fits}"' if fits else "no preset covers that many frames"
        issues.append(
            Issue(
                "model.video_length",
                f'"{model.video_length}" covers {covered} latent frames but eval.sampling_num_frames is {t}; {hint}',
            )
        )
    if n is not None and model.ssm_layer != "none" and ev.image_width % 16 == 0 and ev.image_height % 16 == 0:
        tpf = tokens_per_frame(cfg)
        total = n * ev.txt_maxlen + t * tpf
        if total % model.mini_batch_size:
            issues.append(
                Issue(
                    "eval.txt_maxlen",
                    f"the TTT sequence n*txt_maxlen + T*tokens_per_frame = {n}*{ev.txt_maxlen} + {t}*{tpf} = "
                    f"{total} is not a multiple of model.mini_batch_size ({model.mini_batch_size}); "
                    + _suggest_text_length(n, t * tpf, ev.txt_maxlen, model.mini_batch_size),
                )
            )
    heads = PRESET_HEADS[model.size]
    if heads % par.tp_sharding:
        divisors = ", ".join(str(d) for d in range(1, heads + 1) if heads % d == 0)
        issues.append(
            Issue(
                "parallelism.tp_sharding",
                f"the {model.size} model has {heads} attention heads, which {par.tp_sharding} does not divide; "
                f"use one of {divisors}",
            )
        )
    if cfg.remat.shard_transformer_inputs and par.tp_sharding <= 1:
        issues.append(
            Issue(
                "remat.shard_transformer_inputs",
                "needs parallelism.tp_sharding > 1 (it shards saved layer inputs over the tensor-parallel group)",
            )
        )
    if options.world_size is not None and mesh_size(cfg) != options.world_size:
        others = par.dp_replicate * par.tp_sharding * par.cfg_parallel
        issues.append(
            Issue(
                "parallelism",
                f"dp_replicate x dp_sharding x tp_sharding x cfg_parallel = {par.dp_replicate} x {par.dp_sharding} x "
                f"{par.tp_sharding} x {par.cfg_parallel} = {mesh_size(cfg)}, but the run has {options.world_size} "
                f"processes; change the mesh (e.g. parallelism.dp_sharding = {max(1, options.world_size // others)}) "
                "or the number of processes so they agree",
            )
        )
    if options.check_paths:
        base = options.base_dir or Path.cwd()
        for section, name in PATH_FIELDS:
            value = getattr(getattr(cfg, section), name)
            if isinstance(value, str):
                full = (base / value).resolve()
                if not full.exists():
                    issues.append(Issue(f"{section}.{name}", f"path does not exist: {full}"))
    return issues


def _suggest_text_length(n: int, video_tokens: int, current: int, mini_batch: int) -> str:
    fits: list[int] = []
    for delta in range(mini_batch * 4 + 1):
        for length in dict.fromkeys((current - delta, current + delta)):
            if length >= 1 and (n * length + video_tokens) % mini_batch == 0 and length not in fits:
                fits.append(length)
        if len(fits) >= 2:
            break
    if not fits:
        return "change eval.txt_maxlen or model.mini_batch_size"
    best = sorted(fits, key=lambda length: abs(length - current))[0]
    return f"the nearest eval.txt_maxlen that works is {best}"


def validate_config(
    raw: dict[str, Any], options: RuleOptions | None = None, file: str | os.PathLike | None = None
) -> JobConfig:
    job = _job_schema(load_schema())
    issues = _schema_issues(raw, job)
    if issues:
        raise ConfigError(issues, file)
    cfg = _to_typed(_with_defaults(raw, job))
    issues = check_rules(cfg, options)
    if issues:
        raise ConfigError(issues, file)
    return cfg


def load_config(
    path: str | os.PathLike | None = None,
    overrides: dict[str, dict[str, Any]] | list[str] | None = None,
    *,
    world_size: int | None = None,
    check_paths: bool = False,
) -> JobConfig:
    """defaults < TOML file < overrides (a partial dict, or `section.field=value` strings), validated."""
    from_file = read_config_file(path) if path is not None else None
    if isinstance(overrides, list):
        overrides = parse_set_args(overrides)
    merged = merge_config_objects(from_file, overrides)
    if path is not None:
        merged.setdefault("job", {})["config_file"] = str(path)
    # Relative paths in a config are relative to the working directory, as in the TS SDK.
    options = RuleOptions(world_size=world_size, check_paths=check_paths, base_dir=Path.cwd())
    return validate_config(merged, options, file=path)


def config_to_dict(cfg: JobConfig) -> dict[str, dict[str, Any]]:
    return {f.name: dict(getattr(cfg, f.name).__dict__) for f in fields(cfg)}
