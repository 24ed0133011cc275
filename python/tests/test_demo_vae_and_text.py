"""The demo model's VAE training helpers and `fold_latent_scale`, and the world tokenizer. Tiny inputs only
(CPU, seconds)."""

import json
import math

import numpy as np
import pytest
import torch

from ttt_video.demo.tiny_parts import write_tokenizer_folder
from ttt_video.demo.vae_training import (
    CROP_JITTER,
    VAETraining,
    draw_snippets,
    fold_latent_scale,
    frames_to_tensor,
    new_vae,
    object_crop_origin,
    object_pixels,
    object_weights,
    posterior_means,
    psnr,
    tensor_to_frames,
    train_vae,
)
from ttt_video.demo.world import render_video, sample_videos
from ttt_video.demo.world_text import (
    MAX_PROMPT_TOKENS,
    train_world_spiece_model,
    world_sentences,
    world_words,
)
from ttt_video.t5_tokenizer import SentencePieceT5Tokenizer
from ttt_video.text import END_SCENE_TOKEN, SCENE_TOKENS, START_SCENE_TOKEN


@pytest.fixture(scope="module")
def world_clip() -> np.ndarray:
    """A real 1-segment world video, `(49, 64, 96, 3)` uint8."""
    return render_video(sample_videos(1, 0, 1)[0])


# ------------------------------------------------------------------------------------------ vae_training


@pytest.mark.parametrize(
    "settings",
    [
        {"frames": 8},
        {"frames": 2},
        {"frames": 0},
        {"steps": 0},
        {"batch": 0},
        {"crop": (30, 48)},
        {"crop": (32, 44)},
        {"crop": (0, 48)},
        {"crop": (-8, 48)},
    ],
)
def test_vae_training_rejects_bad_settings(settings):
    with pytest.raises(ValueError, match="VAETraining"):
        VAETraining(**settings)


def test_vae_training_accepts_good_settings():
    assert VAETraining(frames=1).frames == 1
    assert VAETraining(frames=13, crop=(32, 48)).crop == (32, 48)
    assert VAETraining(crop=None).crop is None


def test_object_weights_exact_values():
    x = torch.zeros(1, 3, 2, 2, 3)
    # frame 0: top-left is (0, 0, 0); one pixel differs in its last channel only
    x[0, 2, 0, 1, 2] = 0.5
    # frame 1: top-left is (1, 0, 0); (0, 1) equals it, (1, 0) is (0, 0, 0) like frame 0's corner
    x[0, 0, 1] = 1.0
    x[0, 0, 1, 1, 0] = 0.0
    x[0, 1, 1, 1, 1] = -0.25
    weights = object_weights(x, 5.0)
    assert weights.shape == (1, 1, 2, 2, 3)
    expected = torch.tensor(
        [
            [[1.0, 1.0, 1.0], [1.0, 1.0, 5.0]],
            [[1.0, 1.0, 1.0], [5.0, 5.0, 1.0]],
        ]
    )
    assert torch.equal(weights[0, 0], expected)
    assert torch.equal(object_weights(x, 1.0), torch.ones(1, 1, 2, 2, 3))


def test_frames_tensor_round_trip_is_exact():
    frames = (np.arange(2 * 2 * 8 * 16 * 3) % 256).astype(np.uint8).reshape(2, 2, 8, 16, 3)
    x = frames_to_tensor(frames)
    assert x.shape == (2, 3, 2, 8, 16) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert float(x[0, 1, 0, 0, 0]) == pytest.approx(frames[0, 0, 0, 0, 1] / 127.5 - 1.0)
    back = tensor_to_frames(x)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, frames)
    # out-of-range values are clamped, not wrapped
    assert tensor_to_frames(torch.full((1, 3, 1, 1, 1), 3.0)).tolist() == [[[[[255, 255, 255]]]]]
    assert tensor_to_frames(torch.full((1, 3, 1, 1, 1), -3.0)).tolist() == [[[[[0, 0, 0]]]]]


def test_psnr():
    reference = np.zeros((2, 2, 3), dtype=np.uint8)
    assert psnr(reference, reference.copy()) == math.inf
    frames = reference.copy()
    frames[1, 1, 2] = 12  # one of 12 values off by 12: MSE = 144 / 12 = 12
    assert psnr(reference, frames) == pytest.approx(37.338991, abs=1e-5)  # 10 log10(65025 / 12)
    # no uint8 wrap-around: 0 against 255 everywhere is MSE 255^2, 0 dB
    assert psnr(reference, np.full_like(reference, 255)) == pytest.approx(0.0, abs=1e-12)
    assert psnr(np.full_like(reference, 255), reference) == pytest.approx(0.0, abs=1e-12)


def test_fold_latent_scale_is_exact(world_clip):
    clips = [world_clip[:9], world_clip[24:33]]
    vae = new_vae()
    channels = vae.config.latent_channels
    moments_before = [vae.encode(frames_to_tensor(c[None]), window=48) for c in clips]
    means_before = [posterior_means(vae, c) for c in clips]
    decoded_before = [vae.decode(m, latent_scale=1.0, clamp=False) for m in means_before]
    std_before = float(torch.cat([m.flatten() for m in means_before]).std())
    assert abs(std_before - 1.0) > 0.1  # the folding has something to do

    scale = fold_latent_scale(vae, clips)

    assert scale == pytest.approx(std_before, rel=1e-6)
    means_after = [posterior_means(vae, c) for c in clips]
    assert float(torch.cat([m.flatten() for m in means_after]).std()) == pytest.approx(1.0, abs=1e-4)
    for before, after in zip(means_before, means_after, strict=True):
        torch.testing.assert_close(after, before / scale, rtol=1e-4, atol=1e-5)
    for clip, before in zip(clips, moments_before, strict=True):
        after = vae.encode(frames_to_tensor(clip[None]), window=48)
        expected_logvar = before[:, channels:] - 2 * math.log(scale)
        torch.testing.assert_close(after[:, channels:], expected_logvar, rtol=0, atol=1e-4)
    for before, mean in zip(decoded_before, means_after, strict=True):
        after = vae.decode(mean, latent_scale=1.0, clamp=False)
        assert after.shape == before.shape == (1, 3, 9, 64, 96)
        assert float((after - before).abs().max()) < 1e-4


def test_train_vae_two_steps(world_clip):
    vae = new_vae()
    initial = {k: v.clone() for k, v in vae.state_dict().items()}
    messages = []
    settings = VAETraining(steps=2, batch=1, crop=(32, 48), frames=1)
    losses = train_vae(vae, [world_clip], settings, log=messages.append)
    assert len(losses) == 2 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    assert len(messages) == 2 and messages[-1].startswith("vae step 2/2")
    assert not vae.training and all(not m.training for m in vae.modules())
    assert all(not p.requires_grad for p in vae.parameters())
    assert any(not torch.equal(v, initial[k]) for k, v in vae.state_dict().items())


def test_object_crops_sit_on_the_object(world_clip):
    """Each object-centred crop sits on the 8 px grid inside the frame with its centre within CROP_JITTER
    px (plus 4 px of snapping to the grid) of the object's centre, so it keeps most of the 18 px object."""
    rng = np.random.default_rng(0)
    for start in range(0, len(world_clip) - 9, 8):
        snippet = world_clip[start : start + 9]
        y, x = object_crop_origin(snippet, (32, 32), rng)
        assert y % 8 == 0 and x % 8 == 0 and 0 <= y <= 64 - 32 and 0 <= x <= 96 - 32
        ys, xs = np.nonzero(object_pixels(snippet).any(axis=0))
        assert abs(y + 16 - ys.mean()) <= CROP_JITTER + 4 and abs(x + 16 - xs.mean()) <= CROP_JITTER + 4
    settings = VAETraining(batch=6, frames=1, crop=(32, 32), crop_object=True)
    snippets = draw_snippets([world_clip], settings, np.random.default_rng(1))
    assert snippets.shape == (6, 1, 32, 32, 3)
    whole = object_pixels(world_clip[:1]).sum()  # the object is never at the frame's border
    assert all(object_pixels(s).sum() >= 0.6 * whole for s in snippets)


def test_object_crop_of_a_plain_snippet_is_central():
    plain = np.full((5, 64, 96, 3), 20, dtype=np.uint8)
    origins = {object_crop_origin(plain, (32, 32), np.random.default_rng(k)) for k in range(20)}
    assert all(
        abs(y + 16 - 32) <= CROP_JITTER + 4 and abs(x + 16 - 48) <= CROP_JITTER + 4 for y, x in origins
    )


# -------------------------------------------------------------------------------------------- world_text


@pytest.fixture(scope="module")
def world_tokenizer(tmp_path_factory) -> SentencePieceT5Tokenizer:
    """The world tokenizer folder as `make_world_text_encoder` writes it (without the T5 weights),
    loaded as `TextEncoder` loads it: T5's tokenizer with the scene tokens added."""
    from sentencepiece import sentencepiece_model_pb2

    spiece = train_world_spiece_model()
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(spiece)
    folder = write_tokenizer_folder(tmp_path_factory.mktemp("tokenizer"), spiece, len(model.pieces))
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer = SentencePieceT5Tokenizer(folder / "spiece.model", extra_ids=config["extra_ids"])
    tokenizer.add_special_tokens(SCENE_TOKENS)
    return tokenizer


def test_world_words_are_single_pieces(world_tokenizer):
    words = world_words()
    assert len(words) == 30 and "background" in words and "triangle" in words
    for word in words:
        assert world_tokenizer.pieces(word) == [f"\u2581{word}"], word
        assert world_tokenizer.is_piece(f"\u2581{word}"), word


def test_world_sentences_fit_the_prompt_budget(world_tokenizer):
    sentences = world_sentences()
    assert len(sentences) == 648
    counts = [len(world_tokenizer.encode(s)) for s in sentences]
    assert max(counts) == MAX_PROMPT_TOKENS - 3
    for sentence in sentences:
        words = sentence.removesuffix(".").split()
        assert world_tokenizer.pieces(sentence) == [f"\u2581{w}" for w in words] + ["."], sentence
    longest = sentences[counts.index(max(counts))]
    framed = world_tokenizer.encode(START_SCENE_TOKEN + longest + END_SCENE_TOKEN)
    assert len(framed) + 1 == MAX_PROMPT_TOKENS  # with </s>


def test_world_tokenizer_is_deterministic():
    assert train_world_spiece_model() == train_world_spiece_model()
