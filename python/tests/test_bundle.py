import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ttt_video.contracts.bundle import inspect_bundle, safetensors_summary
from ttt_video.weights.errors import WeightsError
from ttt_video.weights.safetensors_io import read_header


def _write_config(folder: Path, config: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    _write_config(root / "transformer", {"_class_name": "TTTVideoDiT", "num_layers": 2})
    save_file(
        {"a.weight": torch.zeros(4, 8, dtype=torch.bfloat16), "a.bias": torch.zeros(4, dtype=torch.bfloat16)},
        str(root / "transformer" / "model-00001-of-00002.safetensors"),
    )
    save_file(
        {"b.weight": torch.zeros(2, 3, dtype=torch.float32)},
        str(root / "transformer" / "model-00002-of-00002.safetensors"),
        metadata={"format": "pt"},
    )
    index = {
        "weight_map": {
            "a.weight": "model-00001-of-00002.safetensors",
            "a.bias": "model-00001-of-00002.safetensors",
            "b.weight": "model-00002-of-00002.safetensors",
        }
    }
    (root / "transformer" / "model.safetensors.index.json").write_text(json.dumps(index))
    _write_config(root / "vae", {"_class_name": "AutoencoderKLCogVideoX", "latent_channels": 16})
    save_file(
        {"dec.conv.weight": torch.zeros(3, 3, dtype=torch.float16)}, str(root / "vae" / "vae.safetensors")
    )
    _write_config(root / "text_encoder", {"d_model": 32})
    save_file({"shared.weight": torch.zeros(10, 32)}, str(root / "text_encoder" / "model.safetensors"))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "spiece.model").write_bytes(b"\x00" * 16)
    return root


def test_complete_bundle(bundle: Path) -> None:
    info = inspect_bundle(bundle)
    assert info["complete"] and info["problems"] == [] and info["missing"] == []
    tr = info["components"]["transformer"]
    assert tr["config"] == {"_class_name": "TTTVideoDiT", "num_layers": 2}
    st = tr["safetensors"]
    assert st["tensors"] == 3
    assert st["parameters"] == 4 * 8 + 4 + 6
    assert st["bytes"] == (4 * 8 + 4) * 2 + 6 * 4
    assert st["dtypes"] == {"BF16": 2, "F32": 1}
    assert st["index"]["missing"] == [] and len(st["index"]["shards"]) == 2
    assert st["files"][1]["metadata"] == {"format": "pt"}
    assert info["components"]["vae"]["safetensors"]["dtypes"] == {"F16": 1}
    assert info["components"]["tokenizer"]["files"] == ["spiece.model"]
    json.dumps(info, allow_nan=False)  # JSON-able as is


def test_missing_parts_are_reported_not_raised(bundle: Path) -> None:
    (bundle / "transformer" / "model-00002-of-00002.safetensors").unlink()
    (bundle / "vae" / "config.json").unlink()
    for f in (bundle / "text_encoder").glob("*.safetensors"):
        f.unlink()
    (bundle / "text_encoder" / "pytorch_model.bin").write_bytes(b"not a pickle, never opened")
    for f in (bundle / "tokenizer").iterdir():
        f.unlink()
    (bundle / "tokenizer").rmdir()
    info = inspect_bundle(bundle)
    assert not info["complete"]
    assert info["missing"] == ["tokenizer"]
    text = "\n".join(info["problems"])
    assert "tokenizer/ is missing" in text
    assert "model-00002-of-00002.safetensors" in text
    assert "vae/config.json is missing" in text
    assert "text_encoder/ has no safetensors weights (only pickled weights" in text
    assert info["components"]["text_encoder"]["pickle_files"] == ["pytorch_model.bin"]


def test_not_a_folder(tmp_path: Path) -> None:
    info = inspect_bundle(tmp_path / "nope")
    assert not info["exists"] and not info["complete"]
    assert info["missing"] == ["transformer", "vae", "text_encoder", "tokenizer"]


def test_header_only_reads_header(tmp_path: Path) -> None:
    # A header that promises 1 GB of data in a small file is rejected; a valid one is read without its data.
    f = tmp_path / "x.safetensors"
    header = json.dumps({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    f.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 8)
    assert read_header(f)["t"]["shape"] == [2]
    bad = json.dumps({"t": {"dtype": "F32", "shape": [2**28], "data_offsets": [0, 2**30]}}).encode()
    f.write_bytes(struct.pack("<Q", len(bad)) + bad + b"\x00" * 8)
    with pytest.raises(WeightsError, match="truncated"):
        read_header(f)
    f.write_bytes(b"\xff" * 8 + b"{}")
    assert "header claims" in safetensors_summary(f)["error"]
    f.write_bytes(b"abc")
    assert "too short" in safetensors_summary(f)["error"]
