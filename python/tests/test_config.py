import base64
import json

import pytest
from conftest import ROOT, read_cases

from ttt_video.contracts import generated
from ttt_video.contracts.config import (
    ConfigError,
    config_to_dict,
    load_config,
    segment_count,
    tokens_per_frame,
)
from ttt_video.contracts.overrides import parse_set_args

SHIPPED = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.toml"))
BAD = read_cases("bad-configs.jsonl")
BAD_SETS = read_cases("bad-set-args.jsonl")


def test_defaults_come_from_the_schema():
    cfg = load_config()
    assert cfg.model.ssm_layer == "ttt_mlp" and cfg.model.mini_batch_size == 64
    assert cfg.eval.sampling_num_frames == 13 and cfg.eval.txt_maxlen == 498
    assert cfg.parallelism.dp_sharding == 8 and cfg.guider.schedule == "reference"
    assert cfg.faithfulness.ttt_lr_alignment == "reference"
    for section, values in config_to_dict(cfg).items():
        for name, value in values.items():
            assert value == generated.FIELD_SCHEMAS[section][name].get("default"), f"{section}.{name}"
    assert segment_count(cfg) == 1 and tokens_per_frame(cfg) == 1350


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_config_is_valid(path):
    cfg = load_config(ROOT / path)
    if path.startswith("configs/eval/ttt-"):
        n = segment_count(cfg)
        assert (n * cfg.eval.txt_maxlen + cfg.eval.sampling_num_frames * tokens_per_frame(cfg)) % 64 == 0
    # 1e6-style values arrive as int
    assert isinstance(cfg.remat.scan_checkpoint_group_size, int)


def test_shipped_configs_cover_every_variant_and_length():
    for kind in ("eval", "train"):
        for variant in ("ttt-linear", "ttt-mlp"):
            for length in ("3s", "9s", "18s", "30s", "63s"):
                assert f"configs/{kind}/{variant}/{length}.toml" in SHIPPED
    assert "configs/eval/cogvideox/3s.toml" in SHIPPED


def test_precedence_overrides_beat_the_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[eval]\nnum_denoising_steps = 30\n[job]\nseed = 7\n")
    cfg = load_config(f, {"eval": {"num_denoising_steps": 20}})
    assert cfg.eval.num_denoising_steps == 20 and cfg.job.seed == 7 and cfg.job.config_file == str(f)
    cfg = load_config(f, ["eval.num_denoising_steps=10"])
    assert cfg.eval.num_denoising_steps == 10


def test_set_coercion_matches_the_ts_side():
    assert parse_set_args(
        [
            "eval.num_denoising_steps=20",
            "eval.cfg_batch=false",
            "model.ssm_layer=ttt_linear",
            "guider.scale=4.5",
            "checkpoint.model_dir=null",
            "job.exp_name=42",
        ]
    ) == {
        "eval": {"num_denoising_steps": 20, "cfg_batch": False},
        "model": {"ssm_layer": "ttt_linear"},
        "guider": {"scale": 4.5},
        "checkpoint": {"model_dir": None},
        "job": {"exp_name": "42"},
    }


def test_bad_config_corpus_is_large_enough():
    assert len(BAD) >= 30


@pytest.mark.parametrize("vector", BAD, ids=[v["name"] for v in BAD])
def test_bad_config(vector, tmp_path):
    f = tmp_path / "bad.toml"
    if "toml_base64" in vector:
        f.write_bytes(base64.b64decode(vector["toml_base64"]))
    else:
        f.write_text(vector["toml"], encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(
            f,
            vector.get("set"),
            world_size=vector.get("world_size"),
            check_paths=vector.get("check_paths", False),
        )
    issues = {i.path: i for i in info.value.issues}
    assert vector["path"] in issues, str(info.value)
    issue = issues[vector["path"]]
    if "line" in vector:
        assert issue.line == vector["line"]
    if "suggest" in vector:
        assert vector["suggest"] in issue.message
    assert ("--set" if vector.get("set") else str(f)) in str(info.value)


def test_cli_validate_json(tmp_path, capsys):
    from ttt_video.__main__ import main

    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nssm_layr = "x"\n')
    assert main(["config", "validate", "--json", str(ROOT / "configs/eval/ttt-mlp/3s.toml"), str(bad)]) == 1
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert results[0]["ok"] and results[0]["config"]["model"]["ssm_layer"] == "ttt_mlp"
    assert not results[1]["ok"] and results[1]["issues"][0]["path"] == "model.ssm_layr"


@pytest.mark.parametrize("case", BAD_SETS, ids=[c["name"] for c in BAD_SETS])
def test_bad_set_arg_names_the_real_constraint(case):
    with pytest.raises(ConfigError) as info:
        parse_set_args([case["set"]])
    assert info.value.code == case["code"]
    assert [(i.path, i.message) for i in info.value.issues] == [
        (case["path"], f"{case['message']} (in --set {case['set']})")
    ]
