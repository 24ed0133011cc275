"""The job configuration (contract 1): TOML in, a typed, validated ``JobConfig`` out.

Fields, defaults, model facts and the cross-field rules are generated from the TypeScript contract
(sdk/contracts/config) into ``generated.py``; this module only evaluates them, in the same order and with
the same messages as sdk/contracts/config/validate.ts: first each section and field on its own (one issue
per field, in input order), then the rules.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jsonschema

from . import generated
from .expr import MISSING, Scope, evaluate
from .generated import SECTION_TYPES, JobConfig
from .messages import field_message, unknown_field, unknown_section


@dataclass
class Issue:
    path: str
    message: str
    line: int | None = None
    column: int | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def format_issues(file: str | None, issues: list[Issue]) -> str:
    lines = []
    for issue in issues:
        where = issue.file or file or ("<input>" if issue.line is not None else None)
        if where is not None and issue.line is not None:
            where += f":{issue.line}" + (f":{issue.column}" if issue.column is not None else "")
        prefix = ": ".join(p for p in (where, issue.path) if p)
        lines.append(f"{prefix}: {issue.message}" if prefix else issue.message)
    return "\n".join(lines)


class InputError(ValueError):
    """A user input that cannot be used; ``issues`` say where (field paths, lines) and what to do."""

    code = "CONFIG"

    def __init__(self, issues: list[Issue], file: str | os.PathLike | None = None):
        self.issues = issues
        self.file = str(file) if file is not None else None
        super().__init__(format_issues(self.file, issues))


class ConfigError(InputError):
    """A config that cannot be used; ``issues`` name the field paths (the same as the TS side)."""


# ---------------------------------------------------------------------------------------------------
# Reading


def read_input_file(path: Path, kind: str, name: str, fail: Callable[[str], InputError]) -> bytes:
    """The bytes of a user's input file. A folder or an unreadable file raises ``fail(message)`` (the
    caller's error, naming the file): ``is a folder, not {kind}`` or ``cannot read {name} ({strerror})``."""
    if path.is_dir():
        raise fail(f"is a folder, not {kind}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise fail(f"cannot read {name} ({e.strerror})") from e


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parses a TOML config file without validating it; errors name the file, line and column."""
    path = Path(path)
    data = read_input_file(
        path, "a TOML file", "the config file", lambda m: ConfigError([Issue("", m)], path)
    )
    return parse_config_text(data, path)


def parse_config_text(data: bytes | str, file: str | os.PathLike | None = None) -> dict[str, Any]:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as e:
            line, column = _line_column(data[: e.start].decode("utf-8", errors="replace"))
            raise ConfigError(
                [Issue("", f"not valid UTF-8 (byte {e.start}); save the file as UTF-8", line, column)], file
            ) from None
    else:
        text = data
    if not text.strip():
        raise ConfigError([Issue("", "the config file is empty")], file)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message, line, column = _toml_position(str(e))
        raise ConfigError([Issue("", f"invalid TOML: {message}", line, column)], file) from None


def _toml_position(message: str) -> tuple[str, int | None, int | None]:
    """Python 3.11's message ends with '(at line L, column C)'."""
    head, sep, tail = message.rpartition(" (at line ")
    if not sep:
        return message, None, None
    try:
        line, column = tail.rstrip(")").split(", column ")
        return head, int(line), int(column)
    except ValueError:
        return message, None, None


def _line_column(prefix: str) -> tuple[int, int]:
    lines = prefix.split("\n")
    return len(lines), len(lines[-1]) + 1


def merge_config_objects(*sources: dict[str, Any] | None) -> dict[str, Any]:
    """Deep merge of section tables; later sources win."""
    out: dict[str, Any] = {}
    for src in sources:
        for section, values in (src or {}).items():
            if isinstance(values, dict) and isinstance(out.get(section, {}), dict):
                out[section] = {**out.get(section, {}), **values}
            else:
                out[section] = values
    return out


# ---------------------------------------------------------------------------------------------------
# Validation: sections and fields one by one


def field_schema(section: str, name: str) -> dict[str, Any]:
    return generated.FIELD_SCHEMAS[section][name]


def field_accepts(section: str, name: str, value: Any) -> bool:
    return jsonschema.Draft202012Validator(field_schema(section, name)).is_valid(value)


def schema_issues(raw: Any) -> list[Issue]:
    """Problems of the sections and fields taken one by one (unknown names, wrong types, out of range)."""
    if not isinstance(raw, dict):
        return [Issue("", "the config must be a TOML document of [section] tables")]
    sections = list(generated.FIELD_SCHEMAS)
    issues: list[Issue] = []
    for section, values in raw.items():
        if section not in generated.FIELD_SCHEMAS:
            issues.append(Issue(section, unknown_section(section, sections)))
        elif not isinstance(values, dict):
            issues.append(Issue(section, f"must be a table [{section}], not a single value"))
        else:
            names = list(generated.FIELD_SCHEMAS[section])
            for name, value in values.items():
                path = f"{section}.{name}"
                if name not in names:
                    issues.append(Issue(path, unknown_field(section, name, names)))
                elif not field_accepts(section, name, value):
                    issues.append(Issue(path, field_message(field_schema(section, name), value)))
    return issues


def _to_typed(raw: dict[str, Any]) -> JobConfig:
    """Defaults filled in, TOML's 1e6-style floats of integer fields as int, ints of float fields as float."""
    sections = {}
    for section, cls in SECTION_TYPES.items():
        given = raw.get(section, {})
        kwargs = {}
        for f in fields(cls):
            v = given.get(f.name, field_schema(section, f.name).get("default"))
            if f.type in ("int", "int | None") and isinstance(v, float) and v.is_integer():
                v = int(v)
            elif f.type == "float" and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            kwargs[f.name] = v
        sections[section] = cls(**kwargs)
    return JobConfig(**sections)


# ---------------------------------------------------------------------------------------------------
# Validation: the cross-field rules (generated.RULES)


@dataclass
class RuleOptions:
    world_size: int | None = None
    run_kind: str | None = None
    check_paths: bool = False
    base_dir: Path | None = None


def rule_scope(cfg: JobConfig, options: RuleOptions | None = None) -> Scope:
    options = options or RuleOptions()
    run = {"$world_size": options.world_size, "$run_kind": options.run_kind}

    def lookup(name: str) -> Any:
        if name in run:
            return run[name]
        if name.startswith("@"):
            expr = generated.DERIVED.get(name[1:], MISSING)
            return MISSING if expr is MISSING else evaluate(expr, scope)
        section, _, field = name.partition(".")
        values = getattr(cfg, section, None)
        return getattr(values, field, MISSING) if values is not None and field else MISSING

    scope = Scope(lookup, generated.RULE_TABLES)
    return scope


def _bind_all(scope: Scope, names: list | None) -> Scope:
    for name, expr in names or []:
        scope = scope.bind(**{name: evaluate(expr, scope)})
    return scope


def _check_rule(rule: dict[str, Any], scope: Scope) -> Issue | None:
    if "when" in rule and evaluate(rule["when"], scope) is not True:
        return None
    bound = _bind_all(scope, rule.get("let"))
    if evaluate(rule["require"], bound) is True:
        return None
    return Issue(rule["path"], str(evaluate(rule["message"], _bind_all(bound, rule.get("hints")))))


def check_rules(cfg: JobConfig, options: RuleOptions | None = None) -> list[Issue]:
    """Issues of the cross-field rules (and, with ``check_paths``, of paths that do not exist)."""
    options = options or RuleOptions()
    scope = rule_scope(cfg, options)
    issues = [i for i in (_check_rule(rule, scope) for rule in generated.RULES) if i is not None]
    return issues + (_missing_paths(cfg, options) if options.check_paths else [])


def _missing_paths(cfg: JobConfig, options: RuleOptions) -> list[Issue]:
    issues = []
    base_dir = options.base_dir
    for field in generated.PATH_FIELDS:
        path = field["path"]
        if field.get("output_of") is not None and field["output_of"] == options.run_kind:
            continue
        section, name = path.split(".")
        value = getattr(getattr(cfg, section), name)
        if isinstance(value, str):
            full = Path(os.path.abspath(Path(base_dir or Path.cwd()) / value))
            if not full.exists():
                issues.append(Issue(path, f"path does not exist: {full}"))
    return issues


def _derived(cfg: JobConfig, name: str) -> Any:
    return evaluate(generated.DERIVED[name], rule_scope(cfg))


def segment_count(cfg: JobConfig) -> int | None:
    return _derived(cfg, "segments")


def tokens_per_frame(cfg: JobConfig) -> int:
    return _derived(cfg, "tokens_per_frame")


def mesh_size(cfg: JobConfig) -> int:
    return _derived(cfg, "mesh_size")


def validate_config(
    raw: dict[str, Any], options: RuleOptions | None = None, file: str | os.PathLike | None = None
) -> JobConfig:
    issues = schema_issues(raw)
    if issues:
        raise ConfigError(issues, file)
    cfg = _to_typed(raw)
    issues = check_rules(cfg, options)
    if issues:
        raise ConfigError(issues, file)
    return cfg


def load_config(
    path: str | os.PathLike | None = None,
    overrides: dict[str, dict[str, Any]] | list[str] | None = None,
    *,
    world_size: int | None = None,
    run_kind: str | None = None,
    check_paths: bool = False,
) -> JobConfig:
    """defaults < TOML file < overrides (a partial dict, or `section.field=value` strings), validated."""
    from .overrides import parse_set_args

    from_file = read_config_file(path) if path is not None else None
    if isinstance(overrides, list):
        overrides = parse_set_args(overrides)
    merged = merge_config_objects(from_file, overrides)
    if path is not None:
        merged.setdefault("job", {})["config_file"] = str(path)
    # Relative paths in a config are relative to the working directory, as in the TS SDK.
    options = RuleOptions(world_size, run_kind, check_paths, base_dir=Path.cwd())
    return validate_config(merged, options, file=path)


def config_to_dict(cfg: JobConfig) -> dict[str, dict[str, Any]]:
    return {f.name: dict(getattr(cfg, f.name).__dict__) for f in fields(cfg)}


def dtype_quirk(cfg: JobConfig, value: bool | str) -> bool:
    """A faithfulness switch that may be "auto": on when the DiT computes in bf16, as the reference
    always did (it rounded only because its compute dtype was bf16)."""
    return cfg.parallelism.fsdp_unsharded_dtype == "bfloat16" if value == "auto" else bool(value)
