"""Validates the cases of a JSON-lines file with the Python contracts and prints one result line each.

Input lines: {"raw": {...}, "world_size": int | null} or {"set": [...]} or {"number": x}.
Output lines: {"ok": bool, "issues": [{path, message}]} (or the --set result, or the formatted number).
The TypeScript side computes the same (test/unit/config-differential.test.ts) and compares exactly.
"""

import json
import sys

from ttt_video.contracts.config import ConfigError, RuleOptions, validate_config
from ttt_video.contracts.messages import format_number
from ttt_video.contracts.overrides import parse_set_args


def outcome(case: dict) -> dict:
    try:
        if "number" in case:
            return {"text": format_number(case["number"])}
        if "set" in case:
            return {"ok": True, "value": parse_set_args(case["set"])}
        validate_config(
            case["raw"],
            RuleOptions(
                world_size=case.get("world_size"), run_kind=case.get("run_kind")
            ),
        )
        return {"ok": True}
    except ConfigError as e:
        return {
            "ok": False,
            "issues": [{"path": i.path, "message": i.message} for i in e.issues],
        }


with open(sys.argv[1], encoding="utf-8") as cases:
    for line in cases:
        print(json.dumps(outcome(json.loads(line)), ensure_ascii=False))
