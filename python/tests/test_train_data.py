"""The training data: the dataset folder, the resumable strided sampler and the seeded per-step draws."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_train_loop import write_dataset, write_run

from ttt_video.contracts.config import load_config
from ttt_video.data.annotations import DataError
from ttt_video.data.dataset import DatasetFolder
from ttt_video.training.batches import SampleOrder, draw_batch, step_generator
from ttt_video.training.dataset import open_dataset, read_clips


@pytest.fixture
def cfg_of(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()

    def make(dataset: Path, **sections):
        return load_config(write_run(tmp_path / "run", bundle, dataset, **sections) / "config.toml")

    return make


def test_sampler_ranks_together_take_the_global_stream_in_epoch_permutations():
    single = SampleOrder(5)
    stream = []
    for _ in range(5):  # 5 steps of 4 samples: 20 entries, four epochs of 5
        stream += single.indices(0, 1, 4)
        single.advance(4)
    for epoch in range(4):
        assert sorted(stream[5 * epoch : 5 * epoch + 5]) == list(range(5))
    assert stream[:5] == torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()
    two = SampleOrder(5)
    for step in range(5):
        rank0, rank1 = two.indices(0, 2, 2), two.indices(1, 2, 2)
        # rank r takes every second entry from the position: together the next 4 entries of the stream
        assert [rank0[0], rank1[0], rank0[1], rank1[1]] == stream[4 * step : 4 * step + 4]
        two.advance(4)


def test_sampler_position_is_restored():
    order = SampleOrder(7)
    order.advance(12)
    restored = SampleOrder(7)
    restored.load_state_dict(order.state_dict())
    assert restored.position == 12
    assert restored.indices(1, 3, 4) == order.indices(1, 3, 4)


def test_draws_are_a_function_of_seed_step_and_rank(tmp_path, cfg_of):
    cfg = cfg_of(write_dataset(tmp_path / "data"), training={"global_batch_size": 4})
    data = open_dataset(cfg)
    a = draw_batch(data, data.clips[:2], cfg, step=3, dp_rank=1, dp_world=2)
    b = draw_batch(data, data.clips[:2], cfg, step=3, dp_rank=1, dp_world=2)
    for name in ("latents", "text", "timesteps", "noise"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    other = draw_batch(data, data.clips[:2], cfg, step=4, dp_rank=1, dp_world=2)
    assert not torch.equal(a.noise, other.noise)
    assert all(500 <= int(t) < 1000 for t in a.timesteps)  # rank 1 of 2: the upper half of the grid
    assert a.clips == tuple(c.id for c in data.clips[:2])
    assert a.latents.shape == (2, 13, 16, 4, 4) and a.text.shape == (2, 1, 12, 32)
    first = step_generator(7, 3, 1)
    assert torch.equal(torch.rand(3, generator=first), torch.rand(3, generator=step_generator(7, 3, 1)))


def test_latents_are_posterior_samples_times_the_scale(tmp_path, cfg_of):
    cfg = cfg_of(
        write_dataset(tmp_path / "data"), model={"scale_factor": 0.5}, training={"text_dropout": 0.0}
    )
    data = open_dataset(cfg)
    batch = draw_batch(data, data.clips[:1], cfg, step=0, dp_rank=0, dp_world=1)
    moments, text = data.load_clip(data.clips[0])
    generator = step_generator(cfg.job.seed, 0, 0)
    mean, logvar = moments.chunk(2, dim=1)
    eps = torch.randn(mean.shape, generator=generator)
    assert torch.allclose(batch.latents[0], 0.5 * (mean + torch.exp(0.5 * logvar) * eps), atol=1e-6)
    assert torch.equal(batch.text[0], text)


def test_text_dropout_one_zeroes_every_text(tmp_path, cfg_of):
    training = {"text_dropout": 1.0, "null_text": "zeros"}
    cfg = cfg_of(write_dataset(tmp_path / "data", dtype=torch.bfloat16), training=training)
    data = open_dataset(cfg)
    batch = draw_batch(data, data.clips[:2], cfg, step=0, dp_rank=0, dp_world=1)
    assert batch.text.dtype == torch.bfloat16 and not batch.text.any()


def test_text_dropout_to_the_empty_prompt_uses_the_datasets_null_text(tmp_path, cfg_of):
    """The default null text: every segment of a dropped sample becomes prepare's T5("")."""
    root = write_dataset(tmp_path / "data", segments=2)
    two_segments = {
        "eval": {"sampling_num_frames": 25},
        "model": {"video_length": "9sec", "mini_batch_size": 4},
    }
    cfg = cfg_of(root, training={"text_dropout": 1.0}, **two_segments)
    data = open_dataset(cfg)
    expected = load_file(str(root / "null_text.safetensors"))["text"]
    batch = draw_batch(data, data.clips[:2], cfg, step=0, dp_rank=0, dp_world=1)
    assert batch.text.shape == (2, 2, *expected.shape[1:])
    assert all(torch.equal(batch.text[b, k], expected[0]) for b in range(2) for k in range(2))
    kept_cfg = cfg_of(root, training={"text_dropout": 0.0}, **two_segments)
    kept = draw_batch(data, data.clips[:1], kept_cfg, step=0, dp_rank=0, dp_world=1)
    assert torch.equal(kept.text[0], data.load_clip(data.clips[0])[1])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.unlink(), "not found"),
        (lambda f: f.write_bytes(b"not safetensors"), "cannot read"),
        (lambda f: save_file({"text": torch.zeros(1, 3, 5)}, str(f)), "has shape (1, 3, 5)"),
    ],
)
def test_a_missing_or_bad_null_text_is_named_with_the_fix(tmp_path, cfg_of, damage, message):
    root = write_dataset(tmp_path / "data")
    damage(root / "null_text.safetensors")
    with pytest.raises(DataError) as error:
        open_dataset(cfg_of(root, training={"text_dropout": 0.1}))
    text = str(error.value)
    assert "null_text.safetensors" in text and message in text and "ttt-video prepare" in text
    assert 'training.null_text = "zeros"' in text
    # nothing is needed from the file when nothing is dropped, or dropped to zeros
    assert open_dataset(cfg_of(root, training={"text_dropout": 0.0})).null_text is None
    assert open_dataset(cfg_of(root, training={"null_text": "zeros"})).null_text is None


def test_manifest_keeps_the_last_line_of_an_id_and_names_bad_lines(tmp_path):
    root = write_dataset(tmp_path / "data", clips=2)
    manifest = root / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    again = {**json.loads(lines[0]), "latent_frames": 99}
    manifest.write_text("\n".join([*lines, "", json.dumps(again)]) + "\n")
    clips = read_clips(DatasetFolder(root))
    assert [(c.id, c.latent_frames) for c in clips] == [("001000", 99), ("001001", 13)]
    manifest.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(DataError, match=r"manifest.jsonl:2: is not a manifest entry"):
        read_clips(DatasetFolder(root))
    manifest.write_text('{"id": "1"}\n')
    with pytest.raises(DataError, match=r"the entry of clip 1 has no segments, latent_frames, latents, text"):
        read_clips(DatasetFolder(root))


def test_dataset_folder_errors_name_the_file(tmp_path, cfg_of):
    with pytest.raises(DataError, match="dataset.json: not found"):
        open_dataset(cfg_of(tmp_path / "nothing"))
    root = write_dataset(tmp_path / "data", clips=2)
    info = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**info, "version": 2}))
    with pytest.raises(DataError, match="dataset version 2, this version reads 1"):
        open_dataset(cfg_of(root))
    (root / "dataset.json").write_text(json.dumps(info))
    clip, other = open_dataset(cfg_of(root)).clips
    save_file({"moments": torch.zeros(13, 32, 2, 2)}, str(root / clip.entry["latents"]))
    with pytest.raises(DataError, match=r"001000.safetensors: clip 001000: 'moments' has shape \(13, 32, 2, 2\), "
                       r"expected \(13, 32, 4, 4\)"):  # fmt: skip
        open_dataset(cfg_of(root)).load_clip(clip)
    (root / other.entry["text"]).write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"clip 001001 \(latents/001001.safetensors, text/001001.safetensors\): "
                       "cannot read its tensors"):  # fmt: skip
        open_dataset(cfg_of(root)).load_clip(other)


def test_dataset_of_another_text_width_is_refused_before_training(tmp_path):
    from ttt_video.__main__ import main
    from ttt_video.models import TTTVideoDiT, build_config

    bundle = tmp_path / "wide"
    TTTVideoDiT.from_config(build_config("tiny", text_dim=48)).save_pretrained(bundle / "transformer")
    run = write_run(tmp_path / "run", bundle, write_dataset(tmp_path / "data", clips=1))
    assert main(["train", "--run-dir", str(run)]) == 1
    error = json.loads((run / "events.jsonl").read_text().splitlines()[-1])
    assert error["code"] == "CONFIG" and "text_dim 48" in error["message"]
