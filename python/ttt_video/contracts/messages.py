"""How config problems are worded; the mirror of sdk/contracts/config/messages.ts.

Messages are derived from the JSON Schema of each field, and numbers are written as JavaScript's
``String(number)`` writes them, so that both languages give the same message for the same input
(differential-tested: test/unit/config-differential.test.ts).
"""

from __future__ import annotations

import json
import math
from typing import Any

SAFE = 9007199254740991  # zod's implicit bounds of z.int(); not a constraint users need to read


def describe_field(s: dict[str, Any]) -> str:
    """'an integer from 1 to 1000', 'one of "linear", "cosine"', 'true or false', ..."""
    if "anyOf" in s:
        return " or ".join(describe_field(x) for x in s["anyOf"])
    if "const" in s:
        return _json(s["const"])
    if "enum" in s:
        return "one of " + ", ".join(_json(v) for v in s["enum"])
    kind = s.get("type")
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "true or false"
    if kind == "string":
        return "a non-empty string" if s.get("minLength", 0) > 0 else "a string"
    if kind == "integer":
        return "an integer" + _bounds(s)
    if kind == "number":
        return "a number" + _bounds(s)
    return "a value of another type"


def _bounds(s: dict[str, Any]) -> str:
    lo = s["minimum"] if "minimum" in s and s["minimum"] > -SAFE else None
    hi = s["maximum"] if "maximum" in s and s["maximum"] < SAFE else None
    if lo is not None and hi is not None:
        return f" from {format_number(lo)} to {format_number(hi)}"
    parts = []
    if lo is not None:
        parts.append(f">= {format_number(lo)}")
    if "exclusiveMinimum" in s:
        parts.append(f"> {format_number(s['exclusiveMinimum'])}")
    if hi is not None:
        parts.append(f"<= {format_number(hi)}")
    if "exclusiveMaximum" in s:
        parts.append(f"< {format_number(s['exclusiveMaximum'])}")
    return " " + " and ".join(parts) if parts else ""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def format_number(x: int | float) -> str:
    """``x`` as JavaScript's ``String(x)`` writes it (shortest round-trip digits, JS exponent rules)."""
    if isinstance(x, int) and abs(x) < 10**21:
        return str(x)
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    zeros = len(all_digits) - len(all_digits.lstrip("0"))
    digits = all_digits[zeros:].rstrip("0")
    # x = 0.<digits> * 10**n
    n = len(whole) - zeros + (int(exponent) if exponent else 0)
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{head}e{'+' if e >= 0 else '-'}{abs(e)}"


def format_value(value: Any) -> str:
    """A value a user gave, for 'got ...' in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    if isinstance(value, str):
        return _json(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, list):
        return "an array"
    return "a table"


def field_message(schema: dict[str, Any], value: Any) -> str:
    return f"must be {describe_field(schema)}, got {format_value(value)}"


def closest(word: str, candidates: list[str]) -> str | None:
    """The nearest candidate by edit distance, if close enough to be a plausible typo."""
    best, best_distance = None, math.inf
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


def unknown_section(section: str, sections: list[str]) -> str:
    guess = closest(section, sections)
    hint = f"; did you mean [{guess}]?" if guess else f"; valid sections: {', '.join(sections)}"
    return f"unknown section [{section}]{hint}"


def unknown_field(section: str, field: str, fields: list[str]) -> str:
    guess = closest(field, fields)
    hint = (
        f"; did you mean {section}.{guess}?"
        if guess
        else f"; valid fields of [{section}]: {', '.join(fields)}"
    )
    return f"unknown field {section}.{field}{hint}"
