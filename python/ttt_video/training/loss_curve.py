"""``<run>/loss.svg``: the loss of every step and a smoothed line, as a plain SVG picture.

The y axis is logarithmic when the losses span more than a factor of 20 (fine-tuning from converted
weights drops fast, then slowly), else linear. The smoothed line is an exponential moving average with
bias correction (``SMOOTHING = 0.9``: about the last ten steps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path

from ..contracts.run_dir import write_atomic

WIDTH, HEIGHT = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 72, 20, 36, 48
SMOOTHING = 0.9
LOG_RATIO = 20.0


def smoothed(values: Sequence[float], smoothing: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average (the first value stays itself)."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = smoothing * average + (1 - smoothing) * value
        out.append(average / (1 - smoothing**i))
    return out


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering ``[low, high]``."""
    if not high > low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.4g}"


class _Axes:
    """Maps (step, loss) to picture coordinates."""

    def __init__(self, steps: int, low: float, high: float, log: bool) -> None:
        self.steps, self.log = max(steps, 2), log
        self.low, self.high = (math.log10(low), math.log10(high)) if log else (low, high)
        if self.high <= self.low:
            self.low, self.high = self.low - 0.5, self.high + 0.5

    def x(self, step: float) -> float:
        return LEFT + (step - 1) / (self.steps - 1) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        return TOP + (self.high - v) / (self.high - self.low) * (HEIGHT - TOP - BOTTOM)

    def y_ticks(self) -> list[float]:
        if not self.log:
            return [t for t in nice_ticks(self.low, self.high) if self.low <= t <= self.high]
        return [10.0**p for p in range(math.ceil(self.low), math.floor(self.high) + 1)]


def _polyline(points: list[tuple[float, float]], colour: str, width: float) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{coords}"/>'


def _frame(axes: _Axes, title: str) -> list[str]:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    parts = [
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="black"/>',
        f'<text x="{(LEFT + right) / 2}" y="{HEIGHT - 10}" text-anchor="middle">step</text>',
    ]
    for tick in nice_ticks(1, axes.steps):
        x = axes.x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="black"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle">{int(tick)}</text>')
    for tick in axes.y_ticks():
        y = axes.y(tick)
        parts.append(f'<line x1="{LEFT - 5}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
    return parts


def loss_curve_svg(losses: Sequence[float], title: str = "training loss") -> str:
    """The SVG text of the curve of ``losses`` (the loss of steps 1, 2, ...); non-finite values are left
    out of the lines."""
    finite = [(i, v) for i, v in enumerate(losses, start=1) if math.isfinite(v)]
    values = [v for _, v in finite]
    if values:
        low, high = min(values), max(values)
        log = low > 0 and high / low > LOG_RATIO
        axes = _Axes(len(losses), low, high, log)
        parts = _frame(axes, f"{title} (step {len(losses)}: {_label(values[-1])})")
        parts.append(_polyline([(axes.x(i), axes.y(v)) for i, v in finite], "#9ab", 1))
        average = smoothed(values)
        parts.append(
            _polyline([(axes.x(i), axes.y(v)) for (i, _), v in zip(finite, average, strict=True)], "#c30", 2)
        )
    else:
        parts = _frame(_Axes(2, 0.0, 1.0, False), f"{title} (no steps yet)")
    body = "\n".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">\n{body}\n</svg>\n'
    )


def write_loss_curve(path: Path, losses: Sequence[float]) -> None:
    write_atomic(path, loss_curve_svg(losses))
