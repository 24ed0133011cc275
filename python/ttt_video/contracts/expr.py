"""The expression language of the config rules (sdk/contracts/config/expr.ts is the other evaluator).

An expression is a JSON literal (number, string, bool, None) or a list ``[op, *args]``. Integers only.
The rules themselves are data, generated from sdk/contracts/config/rules.ts into ``generated.RULES``;
the two evaluators are differential-tested (test/unit/config-differential.test.ts).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .messages import format_number

Lookup = Callable[[str], Any]
MISSING = object()


class ExprError(ValueError):
    pass


class Scope:
    """What an expression can read: ``lookup(name)`` (MISSING when unknown) and the rule tables."""

    def __init__(self, lookup: Lookup, tables: Mapping[str, Mapping[str, Any]]):
        self.lookup = lookup
        self.tables = tables

    def bind(self, **values: Any) -> Scope:
        outer = self.lookup
        return Scope(lambda name: values[name] if name in values else outer(name), self.tables)


def _int(value: Any, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExprError(f"{op}: expected an integer, got {value!r}")
    return value


def _ints(args: list, scope: Scope, op: str) -> list[int]:
    return [_int(evaluate(a, scope), op) for a in args]


def _truthy(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ExprError(f"expected true or false, got {value!r}")
    return value


def _floordiv(a: int, b: int) -> int:
    if b == 0:
        raise ExprError("division by zero")
    return a // b


def _table(scope: Scope, name: Any) -> Mapping[str, Any]:
    if name not in scope.tables:
        raise ExprError(f"unknown table {name}")
    return scope.tables[name]


def _ref(args: list, scope: Scope) -> Any:
    value = scope.lookup(str(args[0]))
    if value is MISSING:
        raise ExprError(f"unknown name {args[0]}")
    return value


def _lookup(args: list, scope: Scope) -> Any:
    name, key, *field = args
    entry = _table(scope, name).get(str(evaluate(key, scope)), MISSING)
    if entry is not MISSING and field:
        entry = entry.get(str(field[0]), MISSING)
    if entry is MISSING:
        raise ExprError(f"{name} has no entry {evaluate(key, scope)}")
    return entry


def _first_key(args: list, scope: Scope) -> Any:
    name, cond = args
    for key, value in _table(scope, name).items():
        if _truthy(evaluate(cond, scope.bind(**{"$key": key, "$value": value}))):
            return key
    return None


def _nearest(args: list, scope: Scope) -> Any:
    start, span = _ints(args[:2], scope, "nearest")
    for d in range(span + 1):
        for x in (start,) if d == 0 else (start - d, start + d):
            if x >= 1 and _truthy(evaluate(args[2], scope.bind(**{"$x": x}))):
                return x
    return None


def _divisors(args: list, scope: Scope) -> list[int]:
    k = _int(evaluate(args[0], scope), "divisors")
    return [d for d in range(1, k + 1) if k % d == 0]


def _compare(test: Callable[[int, int], bool]) -> Callable[[list, Scope], bool]:
    return lambda args, s: test(*_ints(args, s, "compare"))


def _mod(args: list, s: Scope) -> int:
    a, b = _ints(args, s, "mod")
    return a - b * _floordiv(a, b)


def _divround(args: list, s: Scope) -> int:
    """round(a / b) with halves rounded up (b > 0)."""
    a, b = _ints(args, s, "divround")
    return _floordiv(2 * a + b, 2 * b)


def _difference(values: list[int]) -> int:
    return values[0] - values[1]


def _product(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


OPS: dict[str, Callable[[list, Scope], Any]] = {
    "ref": _ref,
    "add": lambda a, s: sum(_ints(a, s, "add")),
    "sub": lambda a, s: _difference(_ints(a, s, "sub")),
    "mul": lambda a, s: _product(_ints(a, s, "mul")),
    "floordiv": lambda a, s: _floordiv(*_ints(a, s, "floordiv")),
    "mod": _mod,
    "divround": _divround,
    "max": lambda a, s: max(_ints(a, s, "max")),
    "min": lambda a, s: min(_ints(a, s, "min")),
    "eq": lambda a, s: _same(evaluate(a[0], s), evaluate(a[1], s)),
    "ne": lambda a, s: not _same(evaluate(a[0], s), evaluate(a[1], s)),
    "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b),
    "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b),
    "and": lambda a, s: all(_truthy(evaluate(x, s)) for x in a),
    "or": lambda a, s: any(_truthy(evaluate(x, s)) for x in a),
    "not": lambda a, s: not _truthy(evaluate(a[0], s)),
    "if": lambda a, s: evaluate(a[1], s) if _truthy(evaluate(a[0], s)) else evaluate(a[2], s),
    "defined": lambda a, s: evaluate(a[0], s) is not None,
    "lookup": _lookup,
    "first_key": _first_key,
    "nearest": _nearest,
    "divisors": _divisors,
    "format": lambda a, s: format_template(str(a[0]), s),
}


def _same(a: Any, b: Any) -> bool:
    """JavaScript's === on JSON values: true is not 1."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _template_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    return "null" if value is None else str(value)


def format_template(template: str, scope: Scope) -> str:
    """``{name}`` placeholders replaced by the formatted values of names (fields, variables)."""

    def replace(match: re.Match) -> str:
        value = _ref([match.group(1)], scope)
        if isinstance(value, list):
            return ", ".join(_template_text(v) for v in value)
        return _template_text(value)

    return re.sub(r"\{([\w.$@]+)\}", replace, template)


def evaluate(expr: Any, scope: Scope) -> Any:
    if not isinstance(expr, list):
        return expr
    op, *args = expr
    if op not in OPS:
        raise ExprError(f"unknown operation {op}")
    return OPS[op](args, scope)
