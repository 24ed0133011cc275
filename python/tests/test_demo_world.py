import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ttt_video.demo.dataset import read_clip, write_dataset
from ttt_video.demo.detect import check_frames, detect_cuts, detect_video
from ttt_video.demo.score import expected_segments, score_video, summarise_scores
from ttt_video.demo.world import (
    BACKGROUND_COLOURS,
    MOTIONS,
    OBJECT_COLOURS,
    SHAPES,
    STILL,
    X_RANGE,
    Y_RANGE,
    Mix,
    SegmentSpec,
    VideoSpec,
    all_combinations,
    combination_split,
    motion_offset,
    render_video,
    sample_videos,
    segment_bounds,
    shape_mask,
)

PYTHON_DIR = Path(__file__).resolve().parents[1]
MIX = Mix(cut=0.35, continuation=0.35, memory=0.3)


@pytest.fixture(scope="module")
def videos():
    """A few dozen videos of 1 to 6 segments holding every kind of segment."""
    return sample_videos(36, seed=11, segments=(1, 6), mix=MIX)


def boundaries_with_cuts(video: VideoSpec) -> list[int]:
    starts = [start for start, _ in segment_bounds(len(video.segments))]
    return [starts[k] for k, s in enumerate(video.segments) if s.requires_scene_transition]


def box_blur(frames: np.ndarray, size: int) -> np.ndarray:
    pad = size // 2
    padded = np.pad(frames.astype(np.float32), ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = frames.shape[1:3]
    return sum(padded[:, i : i + h, j : j + w] for i in range(size) for j in range(size)) / size**2


def test_frame_layout():
    assert segment_bounds(1) == [(0, 49)]
    bounds = segment_bounds(6)
    assert bounds[0] == (0, 49) and bounds[-1][1] == 48 * 6 + 1
    assert all(a[1] == b[0] and b[1] - b[0] == 48 for a, b in zip(bounds, bounds[1:], strict=False))
    assert motion_offset("moves right", 48) == (48, 0) and motion_offset("moves up", 48) == (0, -36)


def test_generator_is_deterministic(videos):
    again = sample_videos(36, seed=11, segments=(1, 6), mix=MIX)
    assert again == videos
    assert [v.storyboard() for v in again] == [v.storyboard() for v in videos]
    for a, b in zip(again[:4], videos[:4], strict=True):
        assert np.array_equal(render_video(a), render_video(b))
    # video i depends only on (seed, i): a shorter list is a prefix
    assert sample_videos(5, seed=11, segments=(1, 6), mix=MIX) == videos[:5]
    other = sample_videos(36, seed=12, segments=(1, 6), mix=MIX)
    assert [v.storyboard() for v in other] != [v.storyboard() for v in videos]


def test_rendered_frames_hold_exactly_the_annotated_palette_and_shape(videos):
    for video in videos[:6]:
        frames = render_video(video)
        assert frames.shape == (video.num_frames, 64, 96, 3) and frames.dtype == np.uint8
        t = 0
        for seg in video.segments:
            bg, obj = np.array(BACKGROUND_COLOURS[seg.background]), np.array(OBJECT_COLOURS[seg.colour])
            for x, y in seg.positions:
                is_obj = (frames[t] == obj).all(-1)
                assert ((frames[t] == bg).all(-1) | is_obj).all()
                expected = np.zeros((64, 96), dtype=bool)
                expected[y : y + 18, x : x + 18] = shape_mask(seg.shape)
                assert np.array_equal(is_obj, expected)
                t += 1


def test_shapes_are_the_documented_rasters():
    circle, square, triangle = (shape_mask(s) for s in SHAPES)
    assert square.all() and square.shape == (18, 18)
    assert circle.sum() == 256 and circle[9].all() and not circle[0, 0]
    # upward triangle: rows widen by one pixel per side every two rows, full width at the bottom
    assert [int(r.sum()) for r in triangle[:4]] == [0, 2, 2, 4] and triangle[17].all()


def check_segment_rules(video: VideoSpec) -> None:
    history: list[SegmentSpec] = []
    for k, seg in enumerate(video.segments):
        assert len(seg.positions) == (49 if k == 0 else 48)
        for x, y in seg.positions:
            assert X_RANGE[0] <= x <= X_RANGE[1] and Y_RANGE[0] <= y <= Y_RANGE[1]
        start = seg.positions[0]
        first_step = 1 if seg.kind == "continue" else 0
        if seg.kind == "continue":
            start = history[-1].positions[-1]
        else:  # a scene opens with its track centred: its first and last boxes mirror about the centre
            (x0, y0), (x1, y1) = seg.positions[0], seg.positions[-1]
            assert abs(x0 + x1 - 2 * 39) <= 1 and abs(y0 + y1 - 2 * 23) <= 1
        for j, (x, y) in enumerate(seg.positions):
            dx, dy = motion_offset(seg.motion, j + first_step)
            assert (x, y) == (start[0] + dx, start[1] + dy)
        prev = history[-1] if history else None
        if k == 0:
            assert seg.kind == "first" and not seg.requires_scene_transition
        elif seg.kind == "cut":
            assert seg.background != prev.background and seg.shape != prev.shape
        elif seg.kind == "continue":
            assert (seg.colour, seg.shape, seg.background) == (prev.colour, prev.shape, prev.background)
            assert seg.motion != prev.motion and not seg.requires_scene_transition
        else:
            assert seg.kind == "memory" and seg.requires_scene_transition and seg.motion == STILL
            earlier = [s for s in history if s.shape == seg.shape]
            assert earlier and seg.shape != prev.shape and seg.colour == earlier[-1].colour
            assert seg.background != prev.background
        history.append(seg)


def test_videos_follow_the_world_rules():
    many = sample_videos(300, seed=3, mix=MIX)
    for video in many:
        check_segment_rules(video)
    kinds = {s.kind for v in many for s in v.segments}
    assert kinds == {"first", "cut", "continue", "memory"}
    assert {len(v.segments) for v in many} == set(range(1, 7))
    texts = [s["text"] for v in many for s in v.storyboard()]
    sentence = re.compile(
        r"A \w+ \w+ (moves \w+|stays still) on a \w+ background\.|The \w+ \w+ now (moves \w+|stays still)\."
        r"|The \w+ comes back on a \w+ background\."
    )
    assert all(sentence.fullmatch(t) for t in texts)
    assert all(
        set(s) == {"text", "requires_scene_transition", "neg_text"} for v in many for s in v.storyboard()
    )


def test_mix_controls_the_kinds():
    def share(mix, kind):
        segs = [s for v in sample_videos(150, seed=5, segments=6, mix=mix) for s in v.segments[1:]]
        return sum(s.kind == kind for s in segs) / len(segs)

    assert share(Mix(cut=1, continuation=0, memory=0), "cut") == 1.0
    assert share(Mix(cut=0, continuation=1, memory=0), "continue") > 0.5
    assert share(Mix(cut=0.1, continuation=0.1, memory=0.8), "memory") > share(MIX, "memory")


def test_detectors_are_exact_on_ground_truth(videos):
    kinds = {s.kind for v in videos for s in v.segments}
    assert kinds == {"first", "cut", "continue", "memory"}
    scores = []
    for video in videos:
        frames = render_video(video)
        score = score_video(video.storyboard(), frames)
        for seg, got in zip(video.segments, score["segments"], strict=True):
            det = got["detected"]
            assert (det["background"], det["colour"], det["shape"], det["motion"]) == (
                seg.background,
                seg.colour,
                seg.shape,
                seg.motion,
            )
        assert [d["frame"] for d in score["cuts"]["detected"]] == boundaries_with_cuts(video)
        assert all(d["expected"] and d["frame"] == d["nearest_boundary"] for d in score["cuts"]["detected"])
        scores.append(score)
    summary = summarise_scores(scores)
    assert summary["accuracy"] == {"background": 1.0, "colour": 1.0, "shape": 1.0, "motion": 1.0}
    assert summary["cut_recall"] == 1.0 and summary["spurious_cuts"] == 0
    assert summary["memory_segments"] >= 3 and summary["memory_accuracy"] == 1.0


def test_detectors_survive_blur_and_noise(videos):
    """A 5 x 5 box blur and Gaussian noise of sigma 20 per channel, as a stand-in for a generated video."""
    rng = np.random.default_rng(0)
    for video in videos[:8]:
        frames = box_blur(render_video(video), 5) + rng.normal(0, 20, (video.num_frames, 64, 96, 3))
        degraded = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
        score = score_video(video.storyboard(), degraded)
        assert all(v == 1.0 for v in score["accuracy"].values()), score["segments"]
        assert [d["frame"] for d in score["cuts"]["detected"]] == boundaries_with_cuts(video)


def one_segment_video(**changes) -> VideoSpec:
    seg = SegmentSpec("first", "red", "circle", "grey", "moves right", tuple((10 + j, 20) for j in range(49)))
    return VideoSpec((dataclasses.replace(seg, **changes),))


@pytest.mark.parametrize(
    "changes",
    [
        {"colour": "purple"},
        {"shape": "square"},
        {"shape": "triangle"},
        {"background": "pink"},
        {"motion": STILL, "positions": ((30, 20),) * 49},
        {"motion": "moves up", "positions": tuple((30, 40 - 3 * j // 4) for j in range(49))},
    ],
)
def test_scores_catch_a_wrong_attribute(changes):
    storyboard = one_segment_video().storyboard()
    score = score_video(storyboard, render_video(one_segment_video(**changes)))
    wrong = {a for a, ok in score["segments"][0]["correct"].items() if not ok}
    assert wrong == ({"motion"} if "motion" in changes else set(changes))
    key = "motion" if "motion" in changes else next(iter(changes))
    assert score["segments"][0]["detected"][key] == changes[key]


def test_memory_and_cut_scores_catch_mistakes(videos):
    video = next(v for v in videos if any(s.kind == "memory" for s in v.segments))
    k = next(i for i, s in enumerate(video.segments) if s.kind == "memory")
    wrong_colour = next(c for c in OBJECT_COLOURS if c != video.segments[k].colour)
    segments = list(video.segments)
    segments[k] = dataclasses.replace(segments[k], colour=wrong_colour)
    score = score_video(video.storyboard(), render_video(VideoSpec(tuple(segments))))
    assert score["memory_accuracy"] < 1.0 and not score["segments"][k]["correct"]["colour"]

    # the same scene held across a required cut: the cut is missed; an unrequested cut is spurious
    still = one_segment_video(motion=STILL, positions=((30, 20),) * 49).segments[0]
    same = dataclasses.replace(still, kind="continue", positions=((30, 20),) * 48)
    other = dataclasses.replace(still, kind="cut", background="teal", positions=((30, 20),) * 48)
    frames = render_video(VideoSpec((still, same)))
    storyboard = VideoSpec((still, other)).storyboard()
    missed = score_video(storyboard, frames)["cuts"]
    assert missed["recall"] == 0.0 and missed["missed"] == 1
    spurious = score_video(VideoSpec((still, same)).storyboard(), render_video(VideoSpec((still, other))))
    assert spurious["cuts"]["spurious"] == 1 and spurious["cuts"]["detected"][0]["frame"] == 49


def test_cut_detection_tolerates_a_late_cut():
    still = one_segment_video(motion=STILL, positions=((30, 20),) * 49).segments[0]
    other = dataclasses.replace(
        still, kind="cut", background="navy", shape="square", positions=((30, 20),) * 48
    )
    frames = render_video(VideoSpec((still, other)))
    frames[49:51] = frames[48]  # the new scene starts two frames late
    assert detect_cuts(frames) == [51]
    cuts = score_video(VideoSpec((still, other)).storyboard(), frames)["cuts"]
    assert cuts["detected"] == [
        {"frame": 51, "nearest_boundary": 49, "within_tolerance": True, "expected": True}
    ]
    assert cuts["recall"] == 1.0


def test_storyboard_text_gives_back_the_description(videos):
    for video in videos:
        expected = expected_segments(video.storyboard())
        got = [(e["kind"], e["colour"], e["shape"], e["background"], e["motion"]) for e in expected]
        assert got == [(s.kind, s.colour, s.shape, s.background, s.motion) for s in video.segments]


def test_memory_expects_the_last_seen_colour():
    texts = [
        "A red circle moves left on a grey background.",
        "A green square stays still on a navy background.",
        "A blue circle moves up on a pink background.",
        "The blue circle now stays still.",
        "A yellow triangle moves down on a teal background.",
        "The circle comes back on a black background.",
    ]
    storyboard = [{"text": t, "requires_scene_transition": i in (1, 2, 4, 5)} for i, t in enumerate(texts)]
    last = expected_segments(storyboard)[-1]
    assert last == {
        "kind": "memory",
        "background": "black",
        "colour": "blue",
        "shape": "circle",
        "motion": STILL,
        "requires_scene_transition": True,
    }
    assert expected_segments(storyboard)[3]["background"] == "pink"


@pytest.mark.parametrize(
    ("storyboard", "message"),
    [
        (
            [{"text": "A red circle moves left on a grey background.", "requires_scene_transition": True}],
            "first",
        ),
        ([{"text": "A crimson circle moves left on a grey background."}], "not a demo-world sentence"),
        ([{"text": "The circle comes back on a pink background."}], "earlier segment"),
        (
            [
                {"text": "A red circle stays still on a grey background."},
                {"text": "The blue circle now moves up."},
            ],
            "continues a scene",
        ),
        (
            [
                {"text": "A red circle stays still on a grey background."},
                {"text": "A red square stays still on a pink background."},
            ],
            "requires_scene_transition",
        ),
        ([], "1 to 6 segments"),
    ],
)
def test_expected_segments_rejects_bad_storyboards(storyboard, message):
    with pytest.raises(ValueError, match=message):
        expected_segments(storyboard)


def test_bad_inputs_get_clear_errors(videos):
    with pytest.raises(ValueError, match="inclusive range"):
        sample_videos(1, seed=0, segments=(0, 7))
    with pytest.raises(ValueError, match="inclusive range"):
        sample_videos(1, seed=0, segments=(1, 2, 3))
    with pytest.raises(ValueError, match="SegmentSpec.colour must be one of"):
        SegmentSpec("first", "orange", "circle", "grey", STILL, ((10, 10),))
    with pytest.raises(ValueError, match="leaves the allowed area"):
        render_video(VideoSpec((SegmentSpec("first", "red", "circle", "grey", STILL, ((0, 10),)),)))
    with pytest.raises(ValueError, match="split must be one of"):
        sample_videos(1, seed=0, split="test")
    with pytest.raises(ValueError, match="non-negative"):
        Mix(cut=-1)
    with pytest.raises(ValueError, match=r"\(F >= 2, 64, 96, 3\)"):
        check_frames(np.zeros((49, 96, 64, 3), dtype=np.uint8))
    video = next(v for v in videos if len(v.segments) == 2)
    with pytest.raises(ValueError, match="48n \\+ 1"):
        detect_video(render_video(video)[:-1], 2)


def test_heldout_split_is_disjoint_and_used():
    split = combination_split()
    assert split == combination_split()
    assert not split.train & split.heldout and split.train | split.heldout == set(all_combinations())
    assert len(split.heldout) == 18 * 5
    for axis, values in enumerate((OBJECT_COLOURS, SHAPES, BACKGROUND_COLOURS, MOTIONS)):
        assert {c[axis] for c in split.train} == set(values)
    assert combination_split(seed=1).heldout != split.heldout
    for name in ("train", "heldout"):
        chosen = sample_videos(40, seed=2, split=name, mix=MIX)
        used = {s.combination for v in chosen for s in v.segments}
        assert used <= getattr(split, name)
        assert {s.kind for v in chosen for s in v.segments} == {"first", "cut", "continue", "memory"}


def test_written_dataset_decodes_to_the_rendered_frames(tmp_path):
    path = write_dataset(tmp_path / "a", 3, segments=(1, 2), seed=4)
    write_dataset(tmp_path / "b", 3, segments=(1, 2), seed=4)
    assert path.read_bytes() == (tmp_path / "b" / "annotations.jsonl").read_bytes()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line, video in zip(lines, sample_videos(3, seed=4, segments=(1, 2)), strict=True):
        assert line == {"clip": line["clip"], "segments": video.storyboard()}
        decoded_a, decoded_b = (
            read_clip(tmp_path / "a" / line["clip"]),
            read_clip(tmp_path / "b" / line["clip"]),
        )
        assert np.array_equal(decoded_a, render_video(video))  # lossless: max error 0
        assert np.array_equal(decoded_a, decoded_b)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dataset(tmp_path / "a", 1, seed=4)


def test_cli_writes_a_dataset(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable,
        "-m",
        "ttt_video.demo.world",
        "--out",
        str(tmp_path),
        "--videos",
        "2",
        "--seed",
        "1",
    ]
    done = subprocess.run(
        [*args, "--segments", "1,2", "--split", "heldout"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr  # the package imports lazily, so runpy runs world.py fresh
    lines = (tmp_path / "annotations.jsonl").read_text().splitlines()
    assert [json.loads(x)["segments"] for x in lines] == [
        v.storyboard() for v in sample_videos(2, seed=1, segments=(1, 2), split="heldout")
    ]
    bad = subprocess.run([*args, "--segments", "0,9"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "range lo,hi" in bad.stderr
