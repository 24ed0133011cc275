"""``section.field=value`` overrides: the mirror of sdk/contracts/config/overrides.ts, and the research
system's command-line flags (``--job.config_file c.toml --eval.num_denoising_steps=50 --wandb.disable``).

A value's text is read by the type of its field, strictly: integers are decimal digits, numbers decimal
with an optional exponent, booleans true/false, null/none only for fields that may be null. Anything else
stays text and is reported with the field's real constraint.
"""

from __future__ import annotations

import re
from typing import Any

from . import generated
from .config import ConfigError, Issue, field_accepts, field_schema
from .messages import field_message, unknown_field, unknown_section

INTEGER = re.compile(r"[-+]?\d+")
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
NULLS = ("null", "none", "None")


def _accepts(schema: dict[str, Any], kind: str) -> bool:
    return schema.get("type") == kind or any(_accepts(s, kind) for s in schema.get("anyOf", []))


def coerce_set_value(schema: dict[str, Any], text: str) -> Any:
    """The value a ``--set`` text stands for in a field of this JSON Schema."""
    if text in NULLS and _accepts(schema, "null"):
        return None
    if text in ("true", "false") and _accepts(schema, "boolean"):
        return text == "true"
    if _accepts(schema, "integer") and INTEGER.fullmatch(text):
        return int(text)
    if _accepts(schema, "number") and NUMBER.fullmatch(text):
        number = float(text)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return text


def locate_field(section: str, name: str | None = None) -> str | None:
    """Where a ``section.field`` name is wrong, or None when it exists."""
    sections = list(generated.FIELD_SCHEMAS)
    if section not in generated.FIELD_SCHEMAS:
        return unknown_section(section, sections)
    names = list(generated.FIELD_SCHEMAS[section])
    return None if name is None or name in names else unknown_field(section, name, names)


def parse_set_arg(arg: str) -> tuple[str, str, Any] | Issue:
    key, eq, text = arg.partition("=")
    parts = key.split(".")
    if not eq or len(parts) != 2 or not all(parts):
        return Issue(key, "must look like section.field=value (e.g. model.ssm_layer=ttt_linear)")
    section, name = parts
    problem = locate_field(section, name)
    if problem:
        return Issue(key, problem)
    value = coerce_set_value(field_schema(section, name), text)
    if not field_accepts(section, name, value):
        return Issue(key, field_message(field_schema(section, name), value))
    return section, name, value


def parse_set_args(args: list[str]) -> dict[str, dict[str, Any]]:
    """``section.field=value`` texts -> a partial config; every bad one is reported at once."""
    out: dict[str, dict[str, Any]] = {}
    issues: list[Issue] = []
    for arg in args:
        parsed = parse_set_arg(arg)
        if isinstance(parsed, Issue):
            issues.append(Issue(parsed.path, f"{parsed.message} (in --set {arg})"))
            continue
        section, name, value = parsed
        out.setdefault(section, {})[name] = value
    if issues:
        raise ConfigError(issues)
    return out


def _is_flag(name: str) -> bool:
    """A boolean field given as a bare ``--section.field`` (the reference's store_true flags)."""
    section, _, field = name.partition(".")
    schema = generated.FIELD_SCHEMAS.get(section, {}).get(field)
    return schema is not None and _accepts(schema, "boolean")


def research_flags(argv: list[str]) -> tuple[str | None, list[str], list[str]]:
    """The research system's flags -> (config file, ``section.field=value`` texts, other arguments).

    ``--job.config_file F`` names the TOML file; ``--section.field=value`` and ``--section.field value``
    override a field; a boolean field may be given bare (``--wandb.disable`` means true). Arguments that
    do not start with ``--section.`` are returned untouched for the caller's own parser.
    """
    config_file, sets, rest = None, [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        match = re.fullmatch(r"--([A-Za-z_]\w*\.[A-Za-z_]\w*)(=(.*))?", arg, flags=re.S)
        if match is None:
            rest.append(arg)
            i += 1
            continue
        name, value = match.group(1), match.group(3)
        next_is_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        if value is None and not (_is_flag(name) and not next_is_value):
            if not next_is_value:
                raise ConfigError([Issue(name, f"--{name} needs a value (--{name}=VALUE)")])
            value, i = argv[i + 1], i + 1
        if name == "job.config_file":
            config_file = value
        else:
            sets.append(f"{name}={'true' if value is None else value}")
        i += 1
    return config_file, sets, rest
