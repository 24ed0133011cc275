"""``python -m ttt_video export``: a training checkpoint becomes a model bundle that the DiT loader and the
sampler load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from test_train_loop import checkpoint_weights, write_dataset, write_run

from ttt_video.__main__ import main
from ttt_video.contracts.bundle import inspect_bundle, read_bundle_info
from ttt_video.models import TTTVideoDiT


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bundle) -> Path:
    """A 2-step run from the tiny bundle, latent scale 0.8; returns its final checkpoint."""
    root = tmp_path_factory.mktemp("export")
    dataset = write_dataset(root / "data", clips=2)
    run = write_run(root / "run", tiny_bundle, dataset, training={"steps": 2}, model={"scale_factor": 0.8})
    assert main(["train", "--run-dir", str(run)]) == 0
    return run / "checkpoints" / "step-2"


def test_export_writes_a_bundle_with_the_checkpoint_weights(tmp_path, trained, tiny_bundle, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(trained), str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    model = TTTVideoDiT.from_pretrained(out)
    want = checkpoint_weights(trained)
    got = model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    start = TTTVideoDiT.from_pretrained(tiny_bundle).state_dict()
    assert not all(torch.equal(got[k], start[k]) for k in want)  # trained weights, not the bundle's
    info = read_bundle_info(out)
    assert info["latent_scale"] == 0.8 and info["ssm_layer"] == "ttt_mlp"
    assert str(trained) in info["source"]
    for name in ("vae", "text_encoder", "tokenizer"):
        assert (out / name).is_symlink() and (out / name).resolve() == (tiny_bundle / name).resolve()
    report = inspect_bundle(out)
    assert report["complete"], report["problems"]
    config = json.loads((out / "transformer" / "config.json").read_text())
    assert config["mini_batch_size"] == 16 and config["ssm_layer"] == "ttt_mlp"


def test_the_sampler_generates_with_an_exported_bundle(tmp_path, trained):
    from test_pipeline import events_of, make_run, sample

    out = tmp_path / "exported"
    assert main(["export", str(trained), str(out), "--copy"]) == 0
    assert not (out / "vae").is_symlink()
    run = make_run(tmp_path, out, "3s", [[{"text": "A cat naps."}]], eval={"num_denoising_steps": 1})
    assert sample(run) == 0
    events = events_of(run)
    assert [e["type"] for e in events if e["type"] == "video.written"] == ["video.written"]
    assert (run / "video-0" / "video.mp4").is_file()


def test_export_dtype(tmp_path, trained):
    out = tmp_path / "bf16"
    assert main(["export", str(trained), str(out), "--dtype", "bfloat16"]) == 0
    with safe_open(str(next((out / "transformer").glob("*.safetensors"))), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}  # noqa: SIM118


def test_export_refuses_an_incomplete_checkpoint_and_a_full_folder(tmp_path, trained, capsys):
    broken = tmp_path / "run" / "checkpoints" / "step-2"
    broken.parent.mkdir(parents=True)
    (tmp_path / "run" / "config.toml").write_text((trained.parent.parent / "config.toml").read_text())
    broken.mkdir()
    for file in trained.iterdir():
        if file.name != "COMPLETE":
            (broken / file.name).write_bytes(file.read_bytes())
    assert main(["export", str(broken), str(tmp_path / "a")]) == 1
    assert "not a complete training checkpoint: it has no COMPLETE marker" in capsys.readouterr().err
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    assert main(["export", str(trained), str(full)]) == 1
    assert "exists and is not empty" in capsys.readouterr().err


def test_export_without_a_source_bundle_asks_for_one(tmp_path, trained, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = (trained.parent.parent / "config.toml").read_text()
    # a run started from DCP weights alone has no bundle to take the VAE and T5 from
    config = config.replace("[checkpoint]\n", f'[checkpoint]\ninit_state_dir = "{trained}"\n')
    config = "\n".join(line for line in config.splitlines() if not line.startswith("model_dir"))
    (run / "config.toml").write_text(config + "\n")
    shutil.copytree(trained, run / "checkpoints" / "step-2")
    assert main(["export", str(run / "checkpoints" / "step-2"), str(tmp_path / "b")]) == 1
    assert "pass --from-bundle BUNDLE" in capsys.readouterr().err
