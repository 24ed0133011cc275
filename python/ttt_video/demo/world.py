"""A fixed synthetic world of one-object scenes: seeded video descriptions, their storyboards, and frames.

Frames are 96 wide x 64 high RGB uint8 at 16 fps. A video of n segments (3 s each) has 48n + 1 frames:
segment 0 covers frames [0, 49), segment k >= 1 covers [48k + 1, 48k + 49). Every rule is in
docs/demo-world.md. `python -m ttt_video.demo.world --out DIR --videos N --seed S` writes a dataset
(see `ttt_video.demo.dataset`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT, FPS = 96, 64, 16
FIRST_SEGMENT_FRAMES, SEGMENT_FRAMES = 49, 48
MAX_SEGMENTS = 6
OBJECT_SIZE = 18  # the object's box is 18 x 18 px
MARGIN = 2  # the box keeps 2 px from every edge, so the 2 px border ring is always background
X_RANGE = (MARGIN, WIDTH - OBJECT_SIZE - MARGIN)  # allowed top-left x, inclusive: 2..76
Y_RANGE = (MARGIN, HEIGHT - OBJECT_SIZE - MARGIN)  # allowed top-left y, inclusive: 2..44
CENTRE = ((X_RANGE[0] + X_RANGE[1]) // 2, (Y_RANGE[0] + Y_RANGE[1]) // 2)  # (39, 23): the box centred

OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 50),
    "green": (50, 180, 70),
    "blue": (60, 90, 230),
    "yellow": (235, 215, 50),
    "white": (245, 245, 245),
    "purple": (160, 70, 210),
}
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "grey": (128, 128, 128),
    "navy": (20, 30, 90),
    "teal": (20, 120, 120),
    "brown": (110, 70, 30),
    "pink": (240, 170, 190),
}
SHAPES = ("circle", "square", "triangle")
STILL = "stays still"
# motion -> unit direction (dx, dy) in image coordinates (y grows downwards)
MOTIONS: dict[str, tuple[int, int]] = {
    "moves left": (-1, 0),
    "moves right": (1, 0),
    "moves up": (0, -1),
    "moves down": (0, 1),
    STILL: (0, 0),
}
# speed as a fraction num/den px per frame: 48 frames of vertical motion at 1 px/frame do not fit in 64 px
HORIZONTAL_SPEED, VERTICAL_SPEED = (1, 1), (3, 4)

KINDS = ("first", "cut", "continue", "memory")
Combination = tuple[str, str, str, str]  # (colour, shape, background, motion)
Position = tuple[int, int]  # top-left (x, y) of the object's box, px


def motion_offset(motion: str, steps: int) -> Position:
    """Displacement (dx, dy) in px after `steps` frames of `motion`: floor(steps * speed) along its axis."""
    dx, dy = MOTIONS[motion]
    num, den = HORIZONTAL_SPEED if dy == 0 else VERTICAL_SPEED
    distance = steps * num // den
    return dx * distance, dy * distance


def segment_bounds(num_segments: int) -> list[tuple[int, int]]:
    """`[(start, stop), ...]` frame ranges of the segments of an `num_segments`-segment video."""
    if not isinstance(num_segments, int) or num_segments < 1:
        raise ValueError(f"num_segments must be a positive int, got {num_segments!r}")
    return [(0, FIRST_SEGMENT_FRAMES)] + [
        (FIRST_SEGMENT_FRAMES + SEGMENT_FRAMES * (k - 1), FIRST_SEGMENT_FRAMES + SEGMENT_FRAMES * k)
        for k in range(1, num_segments)
    ]


def video_frames(num_segments: int) -> int:
    """Frames in a video of `num_segments` segments: 48n + 1."""
    return segment_bounds(num_segments)[-1][1]


@dataclass(frozen=True)
class SegmentSpec:
    """One 3-second segment. `kind`: "first" (opens the video), "cut" (a new scene), "continue" (same
    scene, new motion) or "memory" (a shape seen earlier comes back, still, on a new background)."""

    kind: str
    colour: str
    shape: str
    background: str
    motion: str
    positions: tuple[Position, ...]  # top-left (x, y) of the object's box, one per frame of the segment

    def __post_init__(self):
        for field, value, allowed in (
            ("kind", self.kind, KINDS),
            ("colour", self.colour, tuple(OBJECT_COLOURS)),
            ("shape", self.shape, SHAPES),
            ("background", self.background, tuple(BACKGROUND_COLOURS)),
            ("motion", self.motion, tuple(MOTIONS)),
        ):
            if value not in allowed:
                raise ValueError(f"SegmentSpec.{field} must be one of {', '.join(allowed)}, got {value!r}")

    @property
    def requires_scene_transition(self) -> bool:
        return self.kind in ("cut", "memory")

    @property
    def combination(self) -> Combination:
        return (self.colour, self.shape, self.background, self.motion)

    @property
    def text(self) -> str:
        if self.kind == "continue":
            return f"The {self.colour} {self.shape} now {self.motion}."
        if self.kind == "memory":
            return f"The {self.shape} comes back on a {self.background} background."
        return f"A {self.colour} {self.shape} {self.motion} on a {self.background} background."


@dataclass(frozen=True)
class VideoSpec:
    segments: tuple[SegmentSpec, ...]

    @property
    def num_frames(self) -> int:
        return sum(len(s.positions) for s in self.segments)

    def storyboard(self) -> list[dict]:
        """The video's storyboard segments, as written to the annotation JSONL."""
        return [
            {"text": s.text, "requires_scene_transition": s.requires_scene_transition, "neg_text": None}
            for s in self.segments
        ]


@functools.cache
def shape_mask(shape: str) -> np.ndarray:
    """`(18, 18)` bool mask of `shape`, no anti-aliasing: a pixel is in if its centre is inside the shape.

    circle: radius 9 around the box centre; square: the whole box; triangle: apex at the top centre,
    base along the bottom edge (pointing up)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    half = OBJECT_SIZE / 2
    v, u = np.mgrid[0:OBJECT_SIZE, 0:OBJECT_SIZE] + 0.5  # pixel centres, box coordinates
    if shape == "circle":
        mask = (u - half) ** 2 + (v - half) ** 2 <= half**2
    elif shape == "square":
        mask = np.ones((OBJECT_SIZE, OBJECT_SIZE), dtype=bool)
    else:
        mask = np.abs(u - half) <= v / 2  # edges from (9, 0) to (0, 18) and (18, 18)
    mask.flags.writeable = False
    return mask


def render_video(video: VideoSpec) -> np.ndarray:
    """`(F, 64, 96, 3)` uint8 frames holding exactly the palette colours of `video`."""
    frames = np.empty((video.num_frames, HEIGHT, WIDTH, 3), dtype=np.uint8)
    t = 0
    for segment in video.segments:
        background = np.array(BACKGROUND_COLOURS[segment.background], dtype=np.uint8)
        colour = np.array(OBJECT_COLOURS[segment.colour], dtype=np.uint8)
        mask = shape_mask(segment.shape)
        for x, y in segment.positions:
            if not (X_RANGE[0] <= x <= X_RANGE[1] and Y_RANGE[0] <= y <= Y_RANGE[1]):
                raise ValueError(f"frame {t}: object box at ({x}, {y}) leaves the allowed area")
            frames[t] = background
            frames[t, y : y + OBJECT_SIZE, x : x + OBJECT_SIZE][mask] = colour
            t += 1
    return frames


@dataclass(frozen=True)
class Mix:
    """Relative weights of the kind of every segment after the first. A memory segment falls back to a
    cut when no earlier shape can come back; a continuation falls back to a cut when no new motion fits."""

    cut: float = 0.4
    continuation: float = 0.35
    memory: float = 0.25

    def __post_init__(self):
        weights = (self.cut, self.continuation, self.memory)
        if any(not isinstance(w, int | float) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"Mix weights must be non-negative numbers with a positive sum, got {self}")

    def probabilities(self) -> np.ndarray:
        weights = np.array([self.cut, self.continuation, self.memory], dtype=np.float64)
        return weights / weights.sum()


DEFAULT_MIX = Mix()


@dataclass(frozen=True)
class CombinationSplit:
    """Disjoint train and held-out sets of (colour, shape, background, motion) combinations."""

    train: frozenset[Combination]
    heldout: frozenset[Combination]


def all_combinations() -> list[Combination]:
    return [(c, s, b, m) for c in OBJECT_COLOURS for s in SHAPES for b in BACKGROUND_COLOURS for m in MOTIONS]


@functools.cache
def combination_split(seed: int = 0, heldout_triples: int = 18) -> CombinationSplit:
    """Hold out `heldout_triples` of the 108 (colour, shape, background) triples, drawn by a permutation
    seeded with `seed`, with all five motions each: a continuation keeps the triple and changes only the
    motion, so held-out videos can hold continuations and still use held-out combinations only."""
    triples = [(c, s, b) for c in OBJECT_COLOURS for s in SHAPES for b in BACKGROUND_COLOURS]
    if not 1 <= heldout_triples < len(triples):
        raise ValueError(f"heldout_triples must be in 1..{len(triples) - 1}, got {heldout_triples}")
    order = np.random.default_rng(seed).permutation(len(triples))
    held = {triples[i] for i in order[:heldout_triples]}
    combos = all_combinations()
    return CombinationSplit(
        train=frozenset(x for x in combos if x[:3] not in held),
        heldout=frozenset(x for x in combos if x[:3] in held),
    )


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _fits(motion: str, position: Position, steps: int) -> bool:
    dx, dy = motion_offset(motion, steps)
    x, y = position[0] + dx, position[1] + dy
    return X_RANGE[0] <= x <= X_RANGE[1] and Y_RANGE[0] <= y <= Y_RANGE[1]


def start_position(motion: str, frames: int) -> Position:
    """Where a scene's object starts: the top-left position that centres the track of `frames` frames of
    `motion` in the allowed area (`CENTRE - offset // 2`, offset after `frames - 1` steps), so the text
    of a segment that opens a scene fixes all of its frames."""
    dx, dy = motion_offset(motion, frames - 1)
    return CENTRE[0] - dx // 2, CENTRE[1] - dy // 2


def _track(start: Position, motion: str, frames: int, first_step: int) -> tuple[Position, ...]:
    offsets = (motion_offset(motion, j + first_step) for j in range(frames))
    return tuple((start[0] + dx, start[1] + dy) for dx, dy in offsets)


def _open_scene(rng, kind: str, frames: int, previous: SegmentSpec | None, allowed) -> SegmentSpec:
    """A first segment or a cut: a background and a shape other than the previous segment's, any colour
    and motion, the track centred in the frame (`start_position`)."""
    options = [
        x
        for x in all_combinations()
        if x in allowed and (previous is None or (x[1] != previous.shape and x[2] != previous.background))
    ]
    if not options:
        raise ValueError("no allowed combination can open a scene; the combination set is too small")
    colour, shape, background, motion = _pick(rng, options)
    positions = _track(start_position(motion, frames), motion, frames, first_step=0)
    return SegmentSpec(kind, colour, shape, background, motion, positions)


def _continue_scene(rng, frames: int, previous: SegmentSpec, allowed) -> SegmentSpec | None:
    """Same object and background from where it was, a different motion that fits inside the allowed
    area; None when none fits (a still object in the middle of the frame)."""
    here = previous.positions[-1]
    options = [
        m
        for m in MOTIONS
        if m != previous.motion and (*previous.combination[:3], m) in allowed and _fits(m, here, frames)
    ]
    if not options:
        return None
    motion = _pick(rng, options)
    positions = _track(here, motion, frames, first_step=1)
    return SegmentSpec("continue", previous.colour, previous.shape, previous.background, motion, positions)


def _memory_scene(rng, frames: int, history: list[SegmentSpec], allowed) -> SegmentSpec | None:
    """A shape seen earlier (not the current one) comes back in its last-seen colour, still, in the
    centre, on a background other than the current one; None when no such shape exists."""
    current = history[-1]
    last_colour = {s.shape: s.colour for s in history}  # later segments overwrite earlier ones
    options = [
        (last_colour[shape], shape, background)
        for shape in SHAPES
        if shape in last_colour and shape != current.shape
        for background in BACKGROUND_COLOURS
        if background != current.background and (last_colour[shape], shape, background, STILL) in allowed
    ]
    if not options:
        return None
    colour, shape, background = _pick(rng, options)
    positions = _track(start_position(STILL, frames), STILL, frames, first_step=0)
    return SegmentSpec("memory", colour, shape, background, STILL, positions)


def sample_video(
    rng: np.random.Generator, num_segments: int, mix: Mix = DEFAULT_MIX, allowed: frozenset | None = None
) -> VideoSpec:
    """A random video of `num_segments` segments whose combinations all lie in `allowed` (None: any)."""
    bounds = segment_bounds(num_segments)
    if num_segments > MAX_SEGMENTS:
        raise ValueError(f"num_segments must be at most {MAX_SEGMENTS}, got {num_segments}")
    allowed = frozenset(all_combinations()) if allowed is None else allowed
    segments = [_open_scene(rng, "first", bounds[0][1], None, allowed)]
    for start, stop in bounds[1:]:
        kind = KINDS[1 + int(rng.choice(3, p=mix.probabilities()))]
        segment = None
        if kind == "continue":
            segment = _continue_scene(rng, stop - start, segments[-1], allowed)
        elif kind == "memory":
            segment = _memory_scene(rng, stop - start, segments, allowed)
        segments.append(segment or _open_scene(rng, "cut", stop - start, segments[-1], allowed))
    return VideoSpec(tuple(segments))


SPLITS = {"all": 0, "train": 1, "heldout": 2}


def parse_segment_range(segments: int | tuple[int, int]) -> tuple[int, int]:
    """An int n or an inclusive (lo, hi) range -> (lo, hi), checked against 1..6."""
    try:
        lo, hi = (segments, segments) if isinstance(segments, int) else tuple(segments)
    except (TypeError, ValueError):
        lo = hi = None
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= MAX_SEGMENTS):
        raise ValueError(
            f"segments must be an int or an inclusive range (lo, hi) with 1 <= lo <= hi <= {MAX_SEGMENTS}, "
            f"got {segments!r}"
        )
    return lo, hi


def sample_videos(
    num_videos: int,
    seed: int,
    segments: int | tuple[int, int] = (1, MAX_SEGMENTS),
    mix: Mix = DEFAULT_MIX,
    split: str = "all",
) -> list[VideoSpec]:
    """`num_videos` videos; video i depends only on (seed, i, split), so a longer list extends a shorter one.

    `segments`: a count or an inclusive (lo, hi) range drawn uniformly. `split`: "all" (any
    combination), "train" or "heldout" (`combination_split()` with its defaults)."""
    lo, hi = parse_segment_range(segments)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not isinstance(num_videos, int) or num_videos < 0:
        raise ValueError(f"num_videos must be a non-negative int, got {num_videos!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    allowed = None if split == "all" else getattr(combination_split(), split)
    videos = []
    for index in range(num_videos):
        rng = np.random.default_rng([seed, index, SPLITS[split]])
        videos.append(sample_video(rng, int(rng.integers(lo, hi + 1)), mix, allowed))
    return videos


if __name__ == "__main__":
    from .dataset import main

    raise SystemExit(main())
