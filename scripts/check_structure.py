"""Fails when a hand-written Python function runs over 60 lines or a file over 400 lines.

The project's rule (scripts/check-structure.mjs checks the TypeScript side). Generated files are left out.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION = 60
MAX_FILE = 400
FOLDERS = ("python/ttt_video", "python/tests", "scripts", "test")
GENERATED = ("python/ttt_video/contracts/generated.py",)


def problems_of(path: Path) -> list[str]:
    where = path.relative_to(ROOT).as_posix()
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n") + 1
    problems = (
        [f"{where}: {lines} lines (at most {MAX_FILE})"] if lines > MAX_FILE else []
    )
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = node.end_lineno - first + 1
            if length > MAX_FUNCTION:
                problems.append(
                    f"{where}:{first}: {node.name} is {length} lines (at most {MAX_FUNCTION})"
                )
    return problems


def main() -> int:
    paths = [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    problems = [
        q
        for p in paths
        if p.relative_to(ROOT).as_posix() not in GENERATED
        for q in problems_of(p)
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
