"""`python -m ttt_video prepare` on the tiny bundle: annotations and clips -> a dataset folder."""

import functools
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_cases
from prepare_helpers import (
    clip_events,
    events_of,
    expected_frames,
    make_run,
    manifest,
    prepare,
    write_rgb_clip,
)
from safetensors.torch import load_file

from ttt_video.contracts.storyboard import segment_prompts
from ttt_video.data import DataError, cover_size, probe_clip, read_annotations, read_clip_frames, resample
from ttt_video.demo.dataset import write_clip, write_dataset
from ttt_video.text import TextEncoder
from ttt_video.vae import CogVideoXVAE

# ------------------------------------------------------------------------------------ the rules


def test_resample_takes_the_frame_on_screen_at_each_output_time():
    def indices(starts, fps, count):
        return list(resample(((Fraction(s), k) for k, s in enumerate(starts)), fps, count))

    at = lambda rate, n: [Fraction(k, rate) for k in range(n)]  # noqa: E731
    assert indices(at(16, 49), 16, 49) == list(range(49))  # 16 fps, 48n + 1 frames: itself
    assert indices(at(24, 73), 16, 49) == [3 * i // 2 for i in range(49)]  # floor(1.5 i)
    assert indices(at(8, 25), 16, 49) == [i // 2 for i in range(49)]  # every frame twice
    assert indices(at(30, 91), 16, 49) == [30 * i // 16 for i in range(49)]
    assert indices(at(16, 48), 16, 49) == list(range(48)) + [47]  # a 3 s clip without the extra frame
    # variable frame rate: frames at 0, 0.1, 0.15, 0.3 s; outputs at 0, 1/16, 2/16, ... s
    assert indices([0, Fraction(1, 10), Fraction(3, 20), Fraction(3, 10)], 16, 6) == [0, 0, 1, 2, 2, 3]


def test_cover_size_keeps_the_aspect_ratio_and_covers_the_target():
    assert cover_size(96, 64, 96, 64) == (96, 64)
    assert cover_size(120, 80, 96, 64) == (96, 64)  # same aspect: no crop
    assert cover_size(120, 60, 96, 64) == (128, 64)  # wider: 16 columns cut on each side
    assert cover_size(60, 120, 96, 64) == (96, 192)  # taller: 64 rows cut above and below
    assert cover_size(1920, 1080, 720, 480) == (853, 480)  # 1920 * 4/9 = 853.3
    assert cover_size(1280, 720, 720, 480) == (853, 480)


def test_a_24fps_120x60_clip_is_resampled_and_cropped_by_the_rule(tmp_path):
    """Frame k holds R = 2x, G = 3k, B = 4y: linear in x and y, so bilinear scaling gives them back
    exactly at the mapped coordinates; G tells which source frame each output frame is."""
    y, x = np.mgrid[0:60, 0:120]
    frames = np.stack([np.stack([2 * x, np.full_like(x, 3 * k), 4 * y], -1) for k in range(73)])
    clip = write_rgb_clip(tmp_path / "c.mp4", frames.astype(np.uint8), 24)
    info = probe_clip(clip)
    assert (info.duration, info.fps, info.frames, info.width, info.height) == (
        Fraction(73, 24),
        24,
        73,
        120,
        60,
    )

    out = read_clip_frames(clip, 16, 49, 96, 64)[0]  # (3, 49, 64, 96)
    assert out.shape == (3, 49, 64, 96)
    source = torch.tensor([3 * i // 2 for i in range(49)], dtype=torch.float64)  # floor(1.5 i)
    torch.testing.assert_close(out[1, :, 0, 0].double(), 3 * source / 255 * 2 - 1, atol=1e-6, rtol=0)
    # scaled by 16/15 to 128x64, columns 16..111 kept: output column u shows source x = (u + 16.5) 15/16 - 0.5
    u = torch.arange(96, dtype=torch.float64)
    x_src = (u + 16 + 0.5) * 15 / 16 - 0.5
    v = torch.arange(1, 63, dtype=torch.float64)  # rows 0 and 63 map just outside the source (clamped)
    y_src = (v + 0.5) * 60 / 64 - 0.5
    for i in (0, 17, 48):
        torch.testing.assert_close(out[0, i, 5].double(), 2 * x_src / 255 * 2 - 1, atol=1e-5, rtol=0)
        torch.testing.assert_close(out[2, i, 1:63, 7].double(), 4 * y_src / 255 * 2 - 1, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_bundle):
    """Three demo clips (1 and 2 segments, scene cuts) through a run directory as the TS side makes it."""
    root = tmp_path_factory.mktemp("prepare")
    annotations = write_dataset(root / "demo", 3, segments=(1, 2), seed=3)
    run, out = make_run(root, tiny_bundle), root / "dataset"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the torchrun test compares bit for bit with one thread per process
    try:
        assert prepare(run, annotations, out) == 0, events_of(run)[-1]
    finally:
        torch.set_num_threads(threads)
    return annotations, run, out


def test_dataset_folder_holds_moments_and_text_of_every_clip(prepared, tiny_bundle):
    annotations, run, out = prepared
    info = json.loads((out / "dataset.json").read_text())
    assert {k: info[k] for k in ("format", "version", "fps", "width", "height", "txt_maxlen", "dtype")} == {
        "format": "ttt-video-dataset",
        "version": 1,
        "fps": 16,
        "width": 96,
        "height": 64,
        "txt_maxlen": 8,
        "dtype": "float32",
    }
    assert (info["latent_channels"], info["text_dim"], info["window_frames"]) == (16, 32, 48)
    lines = read_annotations(annotations)
    entries = manifest(out)
    assert sorted(entries) == ["000001", "000002", "000003"]
    for a in lines:
        entry, n = entries[a.id], len(a.segments)
        assert (entry["segments"], entry["frames"], entry["latent_frames"]) == (n, 48 * n + 1, 12 * n + 1)
        assert entry["prompts"] == segment_prompts(a.segments).prompts
        moments = load_file(str(out / entry["latents"]))["moments"]
        text = load_file(str(out / entry["text"]))["text"]
        assert moments.shape == (12 * n + 1, 32, 8, 12) and moments.dtype == torch.float32
        assert text.shape == (n, 8, 32) and text.dtype == torch.float32
    assert any("<start_scene>" in p for e in entries.values() for p in e["prompts"])  # a cut is in the data
    events = events_of(run)
    assert [e["type"] for e in events][:1] == ["run.started"] and events[-1]["type"] == "run.finished"
    assert events[0]["kind"] == "prepare" and events[0]["total"] == 3
    assert clip_events(run) == {0: "encoded", 1: "encoded", 2: "encoded"}
    loaded = [e["component"] for e in events if e["type"] == "model.loaded"]
    assert loaded == ["vae", "text_encoder"]
    warned = {e["path"] for e in events if e["type"] == "warning"}  # the demo prompts exceed 8 tokens
    assert warned == {f"line {a.line}: segment {j}" for a in lines for j in range(len(a.segments))}


def test_stored_moments_and_text_equal_an_independent_encode(prepared, tiny_bundle):
    annotations, _, out = prepared
    vae = CogVideoXVAE.from_pretrained(tiny_bundle / "vae", dtype=torch.float32, parts=("encoder",))
    t5 = TextEncoder.from_pretrained(tiny_bundle, dtype=torch.float32)
    for a in read_annotations(annotations):
        entry = manifest(out)[a.id]
        frames = expected_frames(a.clip)
        assert frames.shape[2] == 48 * len(a.segments) + 1
        reference = vae.encode(frames, window=48)[0].permute(1, 0, 2, 3)
        torch.testing.assert_close(
            load_file(str(out / entry["latents"]))["moments"], reference, atol=1e-6, rtol=0
        )
        text = t5.encode(segment_prompts(a.segments).prompts, 8)
        torch.testing.assert_close(load_file(str(out / entry["text"]))["text"], text, atol=1e-6, rtol=0)
    # the null text of text dropout: T5 of the empty prompt, as sampling's unconditional branch encodes it
    null_text = load_file(str(out / "null_text.safetensors"))["text"]
    torch.testing.assert_close(null_text, t5.encode([""], 8), atol=1e-6, rtol=0)
    assert null_text.shape == (1, 8, 32) and null_text.abs().max() > 0.1


def _annotation_file(tmp_path: Path, cases: list[dict]) -> Path:
    """A good line 1, a blank line 2, then case k on line k + 3 ($CLIP3: a fresh 3 s clip per case)."""
    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "first.mp4", np.zeros((49, 64, 96, 3), np.uint8))
    write_clip(clips / "six.mp4", np.zeros((97, 64, 96, 3), np.uint8))
    (clips / "notes.txt").write_text("not a video")
    lines = [json.dumps({"clip": "clips/first.mp4", "segments": [{"text": "good"}]}), ""]
    for k, case in enumerate(cases):
        shutil.copy(clips / "first.mp4", clips / f"c{k}.mp4")
        fills = {"$CLIP3": f"clips/c{k}.mp4", "$CLIP6": "clips/six.mp4", "$FIRST": "clips/first.mp4"}
        fills["$TEXT_FILE"] = "clips/notes.txt"
        lines.append(functools.reduce(lambda text, kv: text.replace(*kv), fills.items(), case["content"]))
    annotations = tmp_path / "annotations.jsonl"
    annotations.write_text("\n".join(lines) + "\n")
    return annotations


def test_every_bad_annotation_line_is_reported_at_once(tmp_path, tiny_bundle):
    cases = read_cases("bad-annotations.jsonl")
    annotations = _annotation_file(tmp_path, cases)
    run = make_run(tmp_path, tiny_bundle)
    assert prepare(run, annotations, tmp_path / "dataset") == 1
    error = events_of(run)[-1]
    assert error["type"] == "error" and {c["code"] for c in cases} == {error["code"]} == {"DATA"}
    got = {(i["line"], i["path"]): i["message"] for i in error["issues"]}
    assert all(i["file"] == str(annotations) for i in error["issues"])
    expected = {
        (k + 3, issue["path"]): issue["message"]
        for k, case in enumerate(cases)
        for issue in [case, *case.get("more_issues", [])]
    }
    assert set(got) == set(expected), "every bad line, and nothing else, is reported"
    for where, message in expected.items():
        assert message in got[where], (where, got[where])
    assert not (tmp_path / "dataset").exists(), "nothing is written before every line is good"
    with pytest.raises(DataError) as raised:
        read_annotations(annotations)
    text = str(raised.value)
    assert f"{annotations}:3:39: invalid JSON" in text and f"{annotations}:{len(cases) + 2}: " in text


def test_a_file_that_is_not_an_annotation_file_is_one_data_error(tmp_path):
    for content, message, line in [
        (b"\n  \n", "the annotation file holds no clip", None),
        (b'{"clip": "a.mp4"}\n{"clip": "caf\xe9"}', "not valid UTF-8 (byte 31)", 2),
    ]:
        (tmp_path / "a.jsonl").write_bytes(content)
        with pytest.raises(DataError) as raised:
            read_annotations(tmp_path / "a.jsonl")
        (issue,) = raised.value.issues
        assert (issue.message.startswith(message), issue.line, issue.file) == (
            True,
            line,
            str(tmp_path / "a.jsonl"),
        )
    with pytest.raises(DataError, match="is a folder"):
        read_annotations(tmp_path)
