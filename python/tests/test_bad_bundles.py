"""Damaged model bundles fail with the file named, what is wrong with it, and a code of their own
(test/vectors/bad-bundles.jsonl, one case a line): never as INTERNAL, never as an all-black video."""

import json
import shutil
import struct

import pytest
from conftest import ROOT, read_cases
from safetensors.torch import load_file, save_file

from ttt_video.__main__ import main

CASES = read_cases("bad-bundles.jsonl")


def damage(path, how: str) -> None:
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "oversized-header":
        path.write_bytes(struct.pack("<Q", 2**40) + path.read_bytes()[8:])
    elif how == "garbage-header":
        data = path.read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        path.write_bytes(data[:8] + b"\xff" * n + data[8 + n :])
    elif how == "broken-json":
        path.write_text('{"_class_name": ')
    elif how == "random-bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif how == "nan":
        tensors = load_file(str(path))
        name = sorted(tensors)[0]
        tensors[name] = tensors[name].clone().fill_(float("nan"))
        save_file(tensors, str(path), metadata={"format": "pt"})
    elif how == "remove":
        shutil.rmtree(path)
    else:
        raise ValueError(how)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_a_damaged_bundle_names_the_file_and_the_fix(case, tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle, symlinks=False)
    damage(bundle / case["file"], case["damage"])
    run = tmp_path / "run"
    run.mkdir()
    toml = (ROOT / "configs/eval/tiny/3s.toml").read_text() + f'\n[checkpoint]\nmodel_dir = "{bundle}"\n'
    (run / "config.toml").write_text(toml.replace("num_denoising_steps = 10", "num_denoising_steps = 1"))
    (run / "storyboards.jsonl").write_text(json.dumps([{"text": "a cat"}]) + "\n")
    assert main(["sample", "--run-dir", str(run)]) == 1
    error = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()][-1]
    assert (error["type"], error["code"]) == ("error", case["code"]), error
    assert case["message"] in error["message"], error["message"]
    assert case["file"].split("/")[0] in error["message"], error["message"]
    assert "traceback" not in error  # not INTERNAL
    assert not list(run.rglob("*.mp4"))
