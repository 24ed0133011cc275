"""The demo model's bundle manifests, evaluation tables, contact sheets and initial DiTs. Tiny inputs only
(CPU, seconds)."""

import json
import re

import av
import numpy as np
import pytest
import torch

from ttt_video.demo.contact_sheet import GAP, contact_sheet, sheet_frames, write_png
from ttt_video.demo.evaluate import (
    BOARD_SETS,
    board_set,
    board_videos,
    bundle_ssm_layer,
    cut_offsets,
    format_cuts,
    format_table,
)
from ttt_video.demo.manifest import MANIFEST, check_manifest, folder_bytes, sha256_file, write_manifest
from ttt_video.demo.model_bundle import initial_dit, with_ttt_layers
from ttt_video.demo.world import combination_split

# ---------------------------------------------------------------------------------------------- manifest


def _bundle(folder):
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"hello")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) + b"\x00" * 44)
    write_manifest(folder, {"command": "test", "seed": 3})
    return folder


def test_manifest_round_trip(tmp_path):
    folder = _bundle(tmp_path / "bundle")
    content = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert content["command"] == "test" and content["seed"] == 3
    assert content["files"] == {
        "a.txt": {"sha256": sha256_file(folder / "a.txt"), "bytes": 5},
        "sub/b.bin": {"sha256": sha256_file(folder / "sub" / "b.bin"), "bytes": 300},
    }
    assert content["files"]["a.txt"]["sha256"] == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"  # sha256("hello")
    )
    assert content["total_bytes"] == 305
    assert check_manifest(folder) == []


def test_manifest_changed_byte(tmp_path):
    folder = _bundle(tmp_path / "bundle")
    listed = sha256_file(folder / "sub" / "b.bin")
    data = bytearray((folder / "sub" / "b.bin").read_bytes())
    data[100] ^= 1  # same size, one byte different
    (folder / "sub" / "b.bin").write_bytes(bytes(data))
    actual = sha256_file(folder / "sub" / "b.bin")
    assert actual != listed
    assert check_manifest(folder) == [f"sub/b.bin: sha256 {actual}, manifest says {listed}"]


def test_manifest_extra_and_missing_files(tmp_path):
    folder = _bundle(tmp_path / "bundle")
    (folder / "sub" / "extra.json").write_text("{}", encoding="utf-8")
    assert check_manifest(folder) == [f"sub/extra.json: not listed in {MANIFEST}"]
    (folder / "sub" / "extra.json").unlink()
    (folder / "a.txt").unlink()
    assert check_manifest(folder) == [f"a.txt: listed in {MANIFEST} but missing"]


def test_folder_bytes(tmp_path):
    folder = _bundle(tmp_path / "bundle")
    manifest_bytes = (folder / MANIFEST).stat().st_size
    assert folder_bytes(folder) == 5 + 300 + manifest_bytes
    total = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["total_bytes"]
    assert folder_bytes(folder) - manifest_bytes == total
    assert folder_bytes(tmp_path / "bundle" / "sub") == 300


# ---------------------------------------------------------------------------------------------- evaluate


def test_bundle_ssm_layer(tmp_path):
    (tmp_path / "bundle.json").write_text(json.dumps({"ssm_layer": "none", "seed": 0}), encoding="utf-8")
    assert bundle_ssm_layer(tmp_path) == "none"
    (tmp_path / "bundle.json").write_text(json.dumps({"ssm_layer": "ttt_mlp"}), encoding="utf-8")
    assert bundle_ssm_layer(str(tmp_path)) == "ttt_mlp"


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"seed": 0})])
def test_bundle_ssm_layer_errors_name_the_file(tmp_path, content):
    if content is not None:
        (tmp_path / "bundle.json").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "bundle.json"))):
        bundle_ssm_layer(tmp_path)


@pytest.mark.parametrize("name", list(BOARD_SETS))
def test_board_sets_draw_what_they_say(name):
    """Every board set's videos have its segment count and its split's combinations; "memory" boards are
    all first, cut, memory; a different seed gives different boards."""
    chosen = board_set(name)
    videos = board_videos(12, 4, name)
    allowed = getattr(combination_split(), chosen.split)
    assert [len(v.segments) for v in videos] == [chosen.segments] * 12
    assert all(s.combination in allowed for v in videos for s in v.segments)
    if name == "memory":
        assert {tuple(s.kind for s in v.segments) for v in videos} == {("first", "cut", "memory")}
    assert [v.storyboard() for v in videos] != [v.storyboard() for v in board_videos(12, 5, name)]


def test_board_set_presets_and_errors():
    assert board_set("single").preset == "demo/3s" and board_set("heldout").preset == "demo/9s"
    with pytest.raises(ValueError, match="unknown board set 'nope'; choose one of heldout, memory"):
        board_set("nope")


def _video(expected_frames, detected_frames):
    return {"cuts": {"expected_frames": expected_frames, "detected": [{"frame": f} for f in detected_frames]}}


def test_cut_offsets():
    scores = [
        _video([49, 145], [50, 140, 10]),  # +1 (10 is far from both); -5
        _video([97], []),  # none detected
        _video([97], [95, 99]),  # a tie: the first nearest
        _video([49, 97], [61, 110]),  # exactly 12 away counts; 13 does not
        _video([], [49]),  # no expected cut: nothing
    ]
    assert cut_offsets(scores) == [1, -5, None, -2, 12, None]
    assert cut_offsets([]) == []


def _summary(**fields):
    summary = {
        "videos": 2,
        "segments": 6,
        "accuracy": {"background": 1.0, "colour": 0.5, "shape": 2 / 3, "motion": 0.0},
        "cut_recall": 2 / 3,
        "expected_cuts": 3,
        "spurious_cuts": 1,
        "memory_segments": 2,
        "memory_accuracy": 0.5,
    }
    return {**summary, **fields}


def _results():
    return {
        "ttt_mlp": {"summary": _summary(), "videos": [_video([49, 145], [50, 140]), _video([97], [])]},
        "none": {
            "summary": _summary(
                videos=1,
                segments=0,
                accuracy={"background": None, "colour": None, "shape": None, "motion": None},
                cut_recall=None,
                expected_cuts=0,
                spurious_cuts=0,
                memory_segments=0,
                memory_accuracy=None,
            ),
            "videos": [_video([], [3])],
        },
    }


def test_format_table():
    assert format_table(_results()).split("\n") == [
        "| model | background | colour | shape | motion | cuts within 3 frames | spurious cuts | memory |",
        "|---|---|---|---|---|---|---|---|",
        "| ttt_mlp | 100.0% | 50.0% | 66.7% | 0.0% | 66.7% of 3 | 1 | 50.0% of 2 |",
        "| none | - | - | - | - | - of 0 | 0 | - of 0 |",
    ]


def test_format_cuts():
    results = _results()
    results["zero"] = {"summary": _summary(), "videos": [_video([49], [49])]}
    assert format_cuts(results).split("\n") == [
        "ttt_mlp: detected cut - boundary, per expected cut: +1 -5 x",
        "none: detected cut - boundary, per expected cut: ",
        "zero: detected cut - boundary, per expected cut: +0",
    ]


# ----------------------------------------------------------------------------------------- contact_sheet


def test_sheet_frames():
    assert sheet_frames(2, 3) == [[0, 24, 48], [49, 73, 96]]
    assert sheet_frames(1, 2) == [[0, 48]]
    assert sheet_frames(3, 1) == [[0], [49], [97]]


def test_contact_sheet_layout():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(97, 64, 96, 3), dtype=np.uint8)
    sheet = contact_sheet(frames, 2, columns=3, zoom=1)
    assert GAP == 2
    assert sheet.shape == (2 + 2 * (64 + 2), 2 + 3 * (96 + 2), 3) == (134, 296, 3)
    assert sheet.dtype == np.uint8
    covered = np.zeros(sheet.shape[:2], dtype=bool)
    for r, row in enumerate([[0, 24, 48], [49, 73, 96]]):
        for c, t in enumerate(row):
            y, x = 2 + r * 66, 2 + c * 98
            np.testing.assert_array_equal(sheet[y : y + 64, x : x + 96], frames[t])
            covered[y : y + 64, x : x + 96] = True
    assert (sheet[~covered] == 255).all()


def test_contact_sheet_zoom_and_errors():
    frames = np.zeros((49, 2, 3, 3), dtype=np.uint8)
    frames[48, 0, 0] = (10, 20, 30)
    sheet = contact_sheet(frames, 1, columns=2, zoom=2)
    assert sheet.shape == (2 + 4 + 2, 2 + 2 * (6 + 2), 3)
    assert (sheet[2:4, 10:12] == (10, 20, 30)).all()  # frame 48's top-left pixel, 2 x 2
    with pytest.raises(ValueError, match="2 segments need 97 frames"):
        contact_sheet(frames, 2)
    with pytest.raises(ValueError, match="uint8"):
        contact_sheet(frames.astype(np.float32), 1)


def test_write_png_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
    path = write_png(tmp_path / "sheet.png", image)
    assert path == tmp_path / "sheet.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 1
    np.testing.assert_array_equal(decoded[0], image)


# ------------------------------------------------------------------------------------------ model_bundle


@pytest.fixture(scope="module")
def initial_dits():
    return initial_dit("ttt_mlp", 0), initial_dit("none", 0)


def test_initial_dit_is_adaln_zero(initial_dits):
    full, _ = initial_dits
    zeroed = {
        name: p
        for name, p in full.named_parameters()
        if "adaLN_modulation" in name or name.startswith("final_layer.linear")
    }
    assert "final_layer.linear.weight" in zeroed and "final_layer.linear.bias" in zeroed
    assert sum("adaLN_modulation" in name for name in zeroed) >= 2
    for name, p in zeroed.items():
        assert not p.any(), name
    others = [p for name, p in full.named_parameters() if name not in zeroed]
    assert others and sum(bool(p.any()) for p in others) > len(others) // 2


def test_initial_baseline_shares_weights(initial_dits):
    full, baseline = initial_dits
    full_state, baseline_state = full.state_dict(), baseline.state_dict()
    assert set(baseline_state) < set(full_state)
    assert any(".ttt." in name for name in set(full_state) - set(baseline_state))
    for name, value in baseline_state.items():
        assert torch.equal(value, full_state[name]), name
    for name, p in baseline.named_parameters():
        if "adaLN_modulation" in name or name.startswith("final_layer.linear"):
            assert not p.any(), name


def test_with_ttt_layers_keeps_the_pretrained_weights(initial_dits):
    full, baseline = initial_dits
    pretrained = initial_dit("none", 1)
    with torch.no_grad():  # as if trained: adaLN and the final layer are no longer zero
        for p in pretrained.parameters():
            p.add_(0.01)
    grown = with_ttt_layers(pretrained, 0)
    assert grown.config.ssm_layer == "ttt_mlp" and set(grown.state_dict()) == set(full.state_dict())
    grown_state, full_state = grown.state_dict(), full.state_dict()
    for name, value in pretrained.state_dict().items():
        assert torch.equal(grown_state[name], value), name
    added = set(full_state) - set(baseline.state_dict())
    assert added and all(torch.equal(grown_state[n], full_state[n]) for n in added)
    with pytest.raises(ValueError, match="already has TTT layers"):
        with_ttt_layers(full, 0)
