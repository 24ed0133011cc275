"""The demo model's text side: a SentencePiece T5 tokenizer whose pieces are the demo world's words, and a
small random-weight T5 encoder (frozen, as in the research system; the DiT learns to read it).

Every sentence of the world's grammar (docs/demo-world.md) tokenizes into whole words and the full stop:
`A purple triangle stays still on a brown background.` is 10 pieces, so with the two scene tokens and
`</s>` a prompt is at most 13 tokens (`MAX_PROMPT_TOKENS`), below the demo's `eval.txt_maxlen` of 24.
Text outside the world still tokenizes (into characters), but the model never saw it.
"""

from __future__ import annotations

from pathlib import Path

from .tiny_parts import make_t5_encoder, train_t5_spiece, write_tokenizer_folder
from .world import BACKGROUND_COLOURS, MOTIONS, OBJECT_COLOURS, SHAPES

WORLD_TEXT_DIM = 32  # T5 d_model = the DiT's text_dim
MAX_PROMPT_TOKENS = 13  # <start_scene> + 10 pieces + <end_scene> + </s>
_BASE_PIECES = 40  # the trained character-level pieces that spell text outside the world


def world_sentences() -> list[str]:
    """Every sentence of the world's grammar: openings and cuts, continuations and memories (648)."""
    sentences = []
    for colour in OBJECT_COLOURS:
        for shape in SHAPES:
            for motion in MOTIONS:
                sentences.append(f"The {colour} {shape} now {motion}.")
                sentences += [
                    f"A {colour} {shape} {motion} on a {background} background."
                    for background in BACKGROUND_COLOURS
                ]
    for shape in SHAPES:
        sentences += [f"The {shape} comes back on a {b} background." for b in BACKGROUND_COLOURS]
    return sentences


def world_words() -> list[str]:
    """The words of the world's sentences (the full stop apart), sorted."""
    return sorted({w for s in world_sentences() for w in s.replace(".", " ").split()})


def train_world_spiece_model() -> bytes:
    """A T5-style SentencePiece unigram model (pad 0, </s> 1, <unk> 2) as bytes, deterministic.

    A unigram model trained on the world's sentences spells rare words in characters, so after training
    every world word is added as a whole piece (`▁word`, score 0, above every trained piece): the Viterbi
    segmentation then always prefers the whole word."""
    from sentencepiece import sentencepiece_model_pb2

    model = train_t5_spiece(world_sentences(), _BASE_PIECES)
    present = {piece.piece for piece in model.pieces}
    for word in world_words():
        if f"\u2581{word}" not in present:
            piece = model.pieces.add()
            piece.piece, piece.score = f"\u2581{word}", 0.0
            piece.type = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    model.trainer_spec.vocab_size = len(model.pieces)
    return model.SerializeToString()


def make_world_text_encoder(text_encoder_dir: str | Path, tokenizer_dir: str | Path, seed: int = 0):
    """Write the world tokenizer (`tokenizer_dir`) and a random 2-layer T5 encoder of width
    `WORLD_TEXT_DIM` (`text_encoder_dir`, safetensors), laid out as CogVideoX-5b's. Returns
    `(text_encoder_dir, tokenizer_dir)`; the same `seed` gives the same files."""
    from sentencepiece import sentencepiece_model_pb2

    spiece = train_world_spiece_model()
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(spiece)
    pieces = len(model.pieces)
    tokenizer_dir = write_tokenizer_folder(tokenizer_dir, spiece, pieces)
    return make_t5_encoder(text_encoder_dir, seed, WORLD_TEXT_DIM, pieces), tokenizer_dir
