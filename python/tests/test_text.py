"""T5 text encoder: scene tokens, embedding resize, tokenisation as the reference, shapes and dtypes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from safetensors.torch import load_file

from ttt_video.demo.tiny_parts import NUM_EXTRA_IDS, TINY_TOKENIZER_PIECES, make_tiny_text_encoder
from ttt_video.text import SCENE_TOKENS, TextEncoder, TextEncoderError
from ttt_video.weights.errors import WeightsMissingError

PROMPTS = [
    "A small brown mouse runs across the kitchen floor.<end_scene>",
    "<start_scene>The grey cat sits on the windowsill, watching the garden.<end_scene>",
    "<start_scene>  Rain   taps softly <end_scene> and the kettle whistles  ",
    "\ufb01ne \uff34\uff4f\uff4d caf\u00e9 \u2014 na\u00efve",  # NFKC: ligature, full-width letters, accents
    "Tom & Jerry's 3rd chase: 100% fun!",
    "<start_scene><end_scene>",
    "",
]


def build_bundle(root: Path, num_pieces: int, d_model: int, seed: int = 0) -> Path:
    make_tiny_text_encoder(
        root / "text_encoder", root / "tokenizer", seed=seed, d_model=d_model, num_pieces=num_pieces
    )
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("tiny_text"), TINY_TOKENIZER_PIECES, d_model=32)


@pytest.fixture(scope="module")
def encoder(bundle: Path) -> TextEncoder:
    return TextEncoder.from_pretrained(bundle, dtype=torch.float32)


def reference_ids(bundle: Path, text: str, max_length: int, scene_ids: dict[str, int]) -> list[int]:
    """The reference's slow T5Tokenizer with legacy=True, written out with sentencepiece directly.

    Split on the added special tokens (no stripping around them), SentencePiece-encode every piece of
    text on its own (so each gets the '▁' prefix), truncate to L - 1, append </s> (1), pad with 0.
    """
    sp = spm.SentencePieceProcessor(model_file=str(bundle / "tokenizer" / "spiece.model"))
    ids: list[int] = []
    for part in re.split("(" + "|".join(map(re.escape, SCENE_TOKENS)) + ")", text):
        if part in scene_ids:
            ids.append(scene_ids[part])
        elif part:
            ids.extend(sp.encode(part))
    ids = ids[: max_length - 1] + [1]
    return ids + [0] * (max_length - len(ids))


# ----------------------------------------------------------------------------------------- tokenizer


def test_scene_tokens_get_32100_and_32101_for_a_real_size_vocabulary(tmp_path: Path) -> None:
    """32000 SentencePiece pieces + 100 extra ids + 2 scene tokens, embedding 32128 -> 32102 rows.

    The corpus supports only a few hundred trained pieces, so the SentencePiece model is padded with
    filler pieces to exactly 32000 (a valid model: sentencepiece loads it and reports 32000 pieces).
    """
    root = build_bundle(tmp_path, num_pieces=32000, d_model=8)
    assert (
        spm.SentencePieceProcessor(model_file=str(root / "tokenizer" / "spiece.model")).get_piece_size()
        == 32000
    )
    stored = load_file(root / "text_encoder" / "model.safetensors")["shared.weight"]
    assert stored.shape == (32128, 8)

    text = TextEncoder.from_pretrained(root, dtype=torch.float32)
    assert text.scene_token_ids == {"<end_scene>": 32100, "<start_scene>": 32101}
    assert len(text.tokenizer) == 32102
    assert [text.tokenizer.special[t] for t in ("<extra_id_0>", "<extra_id_99>")] == [32099, 32000]
    resized = text.model.shared.weight
    assert resized.shape == (32102, 8)
    assert torch.equal(resized, stored[:32102])  # rows 32100 / 32101 are the pretrained (unused) rows
    ids = text.tokenize(["<start_scene>A mouse.<end_scene>"], 16)[0].tolist()
    assert ids[0] == 32101 and ids[ids.index(1) - 1] == 32100


def test_scene_tokens_follow_the_extra_ids(encoder: TextEncoder) -> None:
    n = TINY_TOKENIZER_PIECES
    assert encoder.scene_token_ids == {
        "<end_scene>": n + NUM_EXTRA_IDS,
        "<start_scene>": n + NUM_EXTRA_IDS + 1,
    }
    assert len(encoder.tokenizer) == n + NUM_EXTRA_IDS + 2
    for token in SCENE_TOKENS:
        assert encoder.tokenizer.pieces(f"mouse{token}cat").count(token) == 1


def test_embedding_resize_keeps_the_existing_rows(bundle: Path, encoder: TextEncoder) -> None:
    stored = load_file(bundle / "text_encoder" / "model.safetensors")["shared.weight"]
    rows = len(encoder.tokenizer)
    assert stored.shape[0] == rows - 2 + 28  # like T5-XXL: 28 spare rows before adding the scene tokens
    assert torch.equal(encoder.model.shared.weight, stored[:rows])
    assert encoder.model.shared.num_embeddings == rows


def test_tokenisation_matches_the_reference_slow_legacy_tokenizer(bundle: Path, encoder: TextEncoder) -> None:
    max_length = 24
    ids = encoder.tokenize(PROMPTS, max_length)
    for prompt, row in zip(PROMPTS, ids.tolist(), strict=True):
        assert row == reference_ids(bundle, prompt, max_length, encoder.scene_token_ids), prompt


def test_padding_and_truncation(encoder: TextEncoder) -> None:
    long = " ".join(["the small mouse runs"] * 20)
    ids = encoder.tokenize(["a cat", long, ""], 10)
    assert ids.shape == (3, 10) and ids.dtype == torch.long
    short = ids[0].tolist()
    end = short.index(1)
    assert end > 0 and short[end + 1 :] == [0] * (10 - end - 1)
    assert ids[1, -1].item() == 1 and 0 not in ids[1].tolist()  # truncated, </s> kept last
    assert ids[2].tolist() == [1] + [0] * 9
    with pytest.raises(ValueError, match="max_length"):
        encoder.tokenize(["a"], 0)
    with pytest.raises(TypeError, match="list of strings"):
        encoder.tokenize("a cat", 8)


# ---------------------------------------------------------------------------------------- encoding


def transformers_t5(bundle: Path, dtype: torch.dtype):
    """transformers' T5EncoderModel of the bundle (eager attention: softmax as the reference's), in dtype."""
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(
        bundle / "text_encoder", dtype=torch.float32, attn_implementation="eager"
    )
    return model.to(dtype).eval()


def test_encode_shape_dtype_and_no_attention_mask(bundle: Path, encoder: TextEncoder) -> None:
    prompts = ["<start_scene>A mouse hides behind a jar.<end_scene>", "The cat sleeps.", ""]
    hidden = encoder.encode(prompts, 20)
    assert hidden.shape == (3, 20, 32) and hidden.dtype == torch.float32
    ids = encoder.tokenize(prompts, 20)
    with torch.no_grad():
        unmasked = encoder.model(ids)
        masked = transformers_t5(bundle, torch.float32)(input_ids=ids, attention_mask=(ids != 0).long())
    torch.testing.assert_close(hidden, unmasked)
    masked = masked.last_hidden_state
    assert not torch.allclose(hidden, masked), "padding must be attended (no attention mask)"
    # Each prompt is encoded independently of the others in the batch.
    torch.testing.assert_close(encoder.encode(prompts[1:2], 20)[0], hidden[1], atol=1e-5, rtol=1e-5)


def test_bf16_is_the_default_and_every_weight_is_bf16(bundle: Path) -> None:
    text = TextEncoder.from_pretrained(bundle)
    assert {p.dtype for p in text.model.parameters()} == {torch.bfloat16}  # T5's `wo` is not kept in fp32
    hidden = text.encode(["A mouse.", "A cat."], 12)
    assert hidden.dtype == torch.bfloat16 and hidden.shape == (2, 12, 32)
    assert torch.isfinite(hidden.float()).all()


@pytest.mark.usefixtures("no_unpickling")
def test_loading_unpickles_nothing(bundle: Path) -> None:
    TextEncoder.from_pretrained(bundle, dtype=torch.float32).encode(["a mouse"], 8)


def test_folder_errors(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(TextEncoderError, match="tokenizer"):
        TextEncoder.from_pretrained(tmp_path)
    (tmp_path / "tokenizer").symlink_to(bundle / "tokenizer")
    with pytest.raises(WeightsMissingError, match="text_encoder/config.json is missing"):
        TextEncoder.from_pretrained(tmp_path)
    encoder_dir = tmp_path / "text_encoder"
    encoder_dir.mkdir()
    (encoder_dir / "config.json").write_text((bundle / "text_encoder" / "config.json").read_text())
    with pytest.raises(TextEncoderError, match="safetensors"):
        TextEncoder.from_pretrained(tmp_path)


def test_too_few_embedding_rows_is_an_error(tmp_path: Path) -> None:
    from transformers import T5Config, T5EncoderModel

    root = build_bundle(tmp_path, TINY_TOKENIZER_PIECES, d_model=8)
    config = T5Config.from_pretrained(root / "text_encoder")
    config.vocab_size = TINY_TOKENIZER_PIECES + NUM_EXTRA_IDS  # no room for the scene tokens
    T5EncoderModel(config).save_pretrained(root / "text_encoder")
    with pytest.raises(TextEncoderError, match="random embeddings"):
        TextEncoder.from_pretrained(root)


def test_tiny_text_parts_are_deterministic(tmp_path: Path) -> None:
    a = build_bundle(tmp_path / "a", TINY_TOKENIZER_PIECES, d_model=8, seed=5)
    b = build_bundle(tmp_path / "b", TINY_TOKENIZER_PIECES, d_model=8, seed=5)
    c = build_bundle(tmp_path / "c", TINY_TOKENIZER_PIECES, d_model=8, seed=6)
    for name in (
        "tokenizer/spiece.model",
        "tokenizer/tokenizer_config.json",
        "text_encoder/model.safetensors",
    ):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "text_encoder/model.safetensors").read_bytes() != (
        c / "text_encoder/model.safetensors"
    ).read_bytes()
