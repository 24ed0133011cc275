"""Deterministic tiny random-weight VAE, T5 encoder and T5 tokenizer folders in the real bundle layouts.

* `make_tiny_vae(dir, seed)`: a diffusers `AutoencoderKLCogVideoX` folder (config.json +
  diffusion_pytorch_model.safetensors, encoder and decoder keys with diffusers names), 16 latent
  channels, 8x spatial / 4x temporal compression, tiny block widths.
* `make_tiny_text_encoder(text_encoder_dir, tokenizer_dir, seed)`: a transformers `T5EncoderModel`
  saved with save_pretrained (safetensors) and a SentencePiece T5 tokenizer folder (spiece.model trained
  on the spot from a built-in English corpus, then the 100 `<extra_id_*>` tokens), laid out like
  CogVideoX-5b's `tokenizer/` (spiece.model, tokenizer_config.json, special_tokens_map.json,
  added_tokens.json). As in T5-XXL (32000 pieces, 32128 embedding rows) the embedding has 28 rows more
  than the tokenizer, so adding the two scene tokens shrinks it.

Nothing here touches global random state: weights come from a seeded `torch.Generator` (VAE) or inside
`torch.random.fork_rng` (T5). The tokenizer does not depend on the seed (training is deterministic).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..vae.config import VAEConfig

TINY_VAE_CONFIG = VAEConfig(
    block_out_channels=(8, 16, 16, 16),
    layers_per_block=1,
    latent_channels=16,
    out_channels=3,
    norm_num_groups=4,
    temporal_compression_ratio=4,
    scaling_factor=0.7,
)

NUM_EXTRA_IDS = 100
# T5 checkpoints have 28 embedding rows beyond the 32000 pieces + 100 extra ids (32128 = 32100 + 28).
SPARE_EMBEDDING_ROWS = 28
TINY_TOKENIZER_PIECES = 256

# --------------------------------------------------------------------------------------------- VAE


def _resnet_shapes(prefix: str, cin: int, cout: int, latent: int | None) -> dict[str, tuple[int, ...]]:
    """One CogVideoXResnetBlock3D; `latent` set = SpatialNorm3D (decoder), None = GroupNorm (encoder)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for norm, channels in (("norm1", cin), ("norm2", cout)):
        if latent is None:
            shapes[f"{prefix}.{norm}.weight"] = (channels,)
            shapes[f"{prefix}.{norm}.bias"] = (channels,)
        else:
            shapes[f"{prefix}.{norm}.norm_layer.weight"] = (channels,)
            shapes[f"{prefix}.{norm}.norm_layer.bias"] = (channels,)
            for conv in ("conv_y", "conv_b"):
                shapes[f"{prefix}.{norm}.{conv}.conv.weight"] = (channels, latent, 1, 1, 1)
                shapes[f"{prefix}.{norm}.{conv}.conv.bias"] = (channels,)
    shapes[f"{prefix}.conv1.conv.weight"] = (cout, cin, 3, 3, 3)
    shapes[f"{prefix}.conv1.conv.bias"] = (cout,)
    shapes[f"{prefix}.conv2.conv.weight"] = (cout, cout, 3, 3, 3)
    shapes[f"{prefix}.conv2.conv.bias"] = (cout,)
    if cin != cout:
        shapes[f"{prefix}.conv_shortcut.weight"] = (cout, cin, 1, 1, 1)
        shapes[f"{prefix}.conv_shortcut.bias"] = (cout,)
    return shapes


def diffusers_vae_parameter_shapes(config: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of diffusers' AutoencoderKLCogVideoX (encoder and decoder) with its shape.

    Written out from the diffusers layout independently of `ttt_video.vae`'s modules, so that tests can
    check the two against each other.
    """
    widths = list(config.block_out_channels)
    levels = len(widths)
    latent = config.latent_channels
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.conv_in.conv.weight": (widths[0], config.in_channels, 3, 3, 3),
        "encoder.conv_in.conv.bias": (widths[0],),
    }
    previous = widths[0]
    for i, width in enumerate(widths):
        for j in range(config.layers_per_block):
            cin = previous if j == 0 else width
            shapes.update(_resnet_shapes(f"encoder.down_blocks.{i}.resnets.{j}", cin, width, None))
        if i < levels - 1:
            shapes[f"encoder.down_blocks.{i}.downsamplers.0.conv.weight"] = (width, width, 3, 3)
            shapes[f"encoder.down_blocks.{i}.downsamplers.0.conv.bias"] = (width,)
        previous = width
    for j in range(2):
        shapes.update(_resnet_shapes(f"encoder.mid_block.resnets.{j}", widths[-1], widths[-1], None))
    shapes["encoder.norm_out.weight"] = (widths[-1],)
    shapes["encoder.norm_out.bias"] = (widths[-1],)
    shapes["encoder.conv_out.conv.weight"] = (2 * latent, widths[-1], 3, 3, 3)
    shapes["encoder.conv_out.conv.bias"] = (2 * latent,)
    if config.use_quant_conv:
        # diffusers sizes quant_conv by the image channels: Conv3d(2 * out_channels, 2 * out_channels, 1).
        shapes["quant_conv.weight"] = (2 * config.out_channels, 2 * config.out_channels, 1, 1, 1)
        shapes["quant_conv.bias"] = (2 * config.out_channels,)

    reversed_widths = widths[::-1]
    shapes["decoder.conv_in.conv.weight"] = (reversed_widths[0], latent, 3, 3, 3)
    shapes["decoder.conv_in.conv.bias"] = (reversed_widths[0],)
    for j in range(2):
        shapes.update(
            _resnet_shapes(f"decoder.mid_block.resnets.{j}", reversed_widths[0], reversed_widths[0], latent)
        )
    previous = reversed_widths[0]
    for i, width in enumerate(reversed_widths):
        for j in range(config.layers_per_block + 1):
            cin = previous if j == 0 else width
            shapes.update(_resnet_shapes(f"decoder.up_blocks.{i}.resnets.{j}", cin, width, latent))
        if i < levels - 1:
            shapes[f"decoder.up_blocks.{i}.upsamplers.0.conv.weight"] = (width, width, 3, 3)
            shapes[f"decoder.up_blocks.{i}.upsamplers.0.conv.bias"] = (width,)
        previous = width
    last = reversed_widths[-1]
    shapes["decoder.norm_out.norm_layer.weight"] = (last,)
    shapes["decoder.norm_out.norm_layer.bias"] = (last,)
    for conv in ("conv_y", "conv_b"):
        shapes[f"decoder.norm_out.{conv}.conv.weight"] = (last, latent, 1, 1, 1)
        shapes[f"decoder.norm_out.{conv}.conv.bias"] = (last,)
    shapes["decoder.conv_out.conv.weight"] = (config.out_channels, last, 3, 3, 3)
    shapes["decoder.conv_out.conv.bias"] = (config.out_channels,)
    return shapes


_NORM_SCALE_SUFFIXES = ("norm_layer.weight", "norm1.weight", "norm2.weight", "norm_out.weight")


def _random_vae_tensor(key: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    if key.endswith(_NORM_SCALE_SUFFIXES):
        return 1.0 + 0.1 * noise
    if len(shape) == 1:
        return 0.1 * noise
    fan_in = 1
    for size in shape[1:]:
        fan_in *= size
    return noise / fan_in**0.5


def make_tiny_vae(
    out_dir: str | Path,
    seed: int = 0,
    config: VAEConfig = TINY_VAE_CONFIG,
) -> Path:
    """Write a random-weight diffusers VAE folder (`config.json` + `diffusion_pytorch_model.safetensors`).

    Weights: N(0, 1/fan_in) for convolutions, 1 + 0.1 N for norm scales, 0.1 N for biases, from a
    generator seeded with `seed`. The config keeps CogVideoX-5b's `scaling_factor` 0.7.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    shapes = diffusers_vae_parameter_shapes(config)
    tensors = {key: _random_vae_tensor(key, shapes[key], generator) for key in sorted(shapes)}
    save_file(tensors, str(out / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    sample = 8 * config.spatial_compression_ratio
    config_json = config.to_diffusers_dict(sample_height=sample, sample_width=sample)
    (out / "config.json").write_text(json.dumps(config_json, indent=2) + "\n", encoding="utf-8")
    return out


# -------------------------------------------------------------------------------------- tokenizer

# A small built-in English corpus (written for this project) for training the tiny SentencePiece model.
TINY_CORPUS = """\
A small brown mouse runs across the kitchen floor and hides behind a jar of honey.
The grey cat sits on the windowsill, watching the garden with sleepy green eyes.
Morning light falls through the curtains and paints long yellow stripes on the wall.
The mouse climbs onto the table, sniffs a piece of cheese, and carries it away.
A door slams somewhere in the house, and the cat jumps off the chair in surprise.
Rain taps softly against the glass while the kettle begins to whistle on the stove.
The dog chases a red ball through the living room and knocks over a lamp.
Two birds land on the fence, sing for a moment, then fly toward the old oak tree.
The camera slowly pans across a quiet street lined with tall houses and parked cars.
A child in a blue coat laughs as she jumps into a puddle in the park.
The cat creeps along the shelf, tail twitching, eyes fixed on the little mouse.
Steam rises from a bowl of soup on the wooden table beside a loaf of bread.
The mouse builds a tiny boat from a walnut shell and sails it across the sink.
Evening comes, the sky turns orange and purple, and the street lamps flicker on.
A train rushes past the station, its windows glowing in the dark blue night.
The cat slips on the wet floor, slides into the cupboard, and pots fall everywhere.
Snow covers the roofs of the village and the children build a snowman together.
The old man reads a newspaper in his armchair while the clock ticks on the wall.
A gust of wind lifts the autumn leaves and scatters them over the empty road.
The mouse peeks out of its hole, checks that the cat is asleep, and tiptoes out.
Waves crash against the rocks as seagulls circle above the lighthouse.
The cat and the mouse stare at each other across the kitchen, neither daring to move.
A bright red balloon drifts up past the windows of a tall apartment building.
The scene fades to black as the music slowly comes to an end.
Inside the bakery, fresh bread and cakes are arranged neatly on the shelves.
The mouse wears a tiny hat made from a thimble and marches proudly across the rug.
Thunder rumbles in the distance and the lights in the house flicker twice.
A fox trots through the snowy forest, leaving a neat line of footprints behind it.
The cat stretches, yawns, and curls up again on the warm cushion by the fire.
Close up of a ticking pocket watch lying open on a dusty wooden desk.
The mouse pulls a string, and a bucket of water tips over onto the sleeping cat.
Flowers sway in the breeze while bees move from one blossom to the next.
A boy rides his bicycle down the hill, his scarf flying behind him.
The kitchen is a mess of flour, broken eggs, and footprints leading to a small hole.
The cat chases the mouse around the table again and again until both are dizzy.
Lanterns glow along the river as small boats drift slowly under the bridge.
The mouse hides inside a teacup, and the cat lifts every cup on the shelf to find it.
Sunlight sparkles on the surface of the lake as ducks paddle near the shore.
A cartoon cat with a bandage on its tail limps out of the room, grumbling.
The screen shows a wide view of the house at night, with one window still lit.
"""


def _corpus_sentences() -> list[str]:
    return [line.strip() for line in TINY_CORPUS.splitlines() if line.strip()]


def train_t5_spiece(sentences, vocab_size: int):
    """A T5-style SentencePiece unigram model (pad 0, </s> 1, <unk> 2, no <s>) trained on `sentences`,
    deterministic (one thread), as a parsed `ModelProto`."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        num_threads=1,
        minloglevel=2,
    )
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(buffer.getvalue())
    return model


def train_tiny_spiece_model(num_pieces: int = TINY_TOKENIZER_PIECES) -> bytes:
    """A T5-style SentencePiece unigram model (pad 0, </s> 1, <unk> 2, no <s>, nmt_nfkc) as bytes.

    The corpus supports a few hundred pieces; for a larger `num_pieces` the trained model is padded with
    filler pieces (`▁filler00000`, ... with the lowest scores) so that the id arithmetic of a real-size
    vocabulary (32000 pieces) holds.
    """
    from sentencepiece import sentencepiece_model_pb2

    trained_pieces = min(num_pieces, TINY_TOKENIZER_PIECES)
    model = train_t5_spiece(_corpus_sentences(), trained_pieces)
    if num_pieces == trained_pieces:
        return model.SerializeToString()
    lowest = min(piece.score for piece in model.pieces)
    for i in range(num_pieces - trained_pieces):
        piece = model.pieces.add()
        piece.piece = f"\u2581filler{i:05d}"
        piece.score = lowest - 1.0 - 1e-3 * i
        piece.type = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    model.trainer_spec.vocab_size = num_pieces
    return model.SerializeToString()


def _added_token(content: str, strip: bool) -> dict[str, object]:
    return {
        "content": content,
        "lstrip": strip,
        "normalized": False,
        "rstrip": strip,
        "single_word": False,
        "special": True,
    }


def make_tiny_tokenizer(out_dir: str | Path, num_pieces: int = TINY_TOKENIZER_PIECES) -> Path:
    """Write a T5 tokenizer folder: `num_pieces` SentencePiece pieces, then `<extra_id_99>` ... `<extra_id_0>`.

    Ids as in T5: `<extra_id_i>` has id `num_pieces + 99 - i`; `len(tokenizer) == num_pieces + 100`.
    """
    return write_tokenizer_folder(out_dir, train_tiny_spiece_model(num_pieces), num_pieces)


def write_tokenizer_folder(out_dir: str | Path, spiece_model: bytes, num_pieces: int) -> Path:
    """Write a T5 tokenizer folder around the SentencePiece model `spiece_model` of `num_pieces` pieces:
    `spiece.model`, then the 100 `<extra_id_*>` tokens in tokenizer_config.json and its companions."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spiece.model").write_bytes(spiece_model)
    extra_ids = [f"<extra_id_{i}>" for i in range(NUM_EXTRA_IDS)]
    extra_id_of = {token: num_pieces + NUM_EXTRA_IDS - 1 - i for i, token in enumerate(extra_ids)}
    decoder = {
        "0": _added_token("<pad>", False),
        "1": _added_token("</s>", False),
        "2": _added_token("<unk>", False),
    }
    for token, token_id in sorted(extra_id_of.items(), key=lambda item: item[1]):
        decoder[str(token_id)] = _added_token(token, True)
    tokenizer_config = {
        "added_tokens_decoder": decoder,
        "additional_special_tokens": extra_ids,
        "clean_up_tokenization_spaces": True,
        "eos_token": "</s>",
        "extra_ids": NUM_EXTRA_IDS,
        "legacy": True,
        "model_max_length": 226,
        "pad_token": "<pad>",
        "sp_model_kwargs": {},
        "tokenizer_class": "T5Tokenizer",
        "unk_token": "<unk>",
    }
    special_tokens_map = {
        "additional_special_tokens": extra_ids,
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    }
    files = {
        "tokenizer_config.json": tokenizer_config,
        "special_tokens_map.json": special_tokens_map,
        "added_tokens.json": extra_id_of,
    }
    for name, content in files.items():
        (out / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------ text encoder


def make_tiny_text_encoder(
    out_dir_text_encoder: str | Path,
    out_dir_tokenizer: str | Path,
    seed: int = 0,
    d_model: int = 32,
    *,
    num_pieces: int = TINY_TOKENIZER_PIECES,
) -> tuple[Path, Path]:
    """Write a random-weight T5 v1.1-style encoder (2 layers, 4 heads, gated-GELU) and its tokenizer.

    The embedding has `num_pieces + 100 + 28` rows, like T5-XXL's 32128 for 32000 pieces.
    Returns `(text_encoder_dir, tokenizer_dir)`.
    """
    tokenizer_dir = make_tiny_tokenizer(out_dir_tokenizer, num_pieces)
    return make_t5_encoder(out_dir_text_encoder, seed, d_model, num_pieces), tokenizer_dir


def make_t5_encoder(out_dir: str | Path, seed: int, d_model: int, num_pieces: int) -> Path:
    """Write a random-weight T5 v1.1-style encoder (2 layers, 4 heads, gated-GELU, `d_model` wide) with
    `num_pieces + 100 + 28` embedding rows (saved with save_pretrained: safetensors)."""
    from transformers import T5Config, T5EncoderModel

    num_heads = 4
    if d_model <= 0 or d_model % num_heads != 0:
        raise ValueError(f"d_model must be a positive multiple of {num_heads}, got {d_model}")
    config = T5Config(
        vocab_size=num_pieces + NUM_EXTRA_IDS + SPARE_EMBEDDING_ROWS,
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=2 * d_model,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=num_heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        is_encoder_decoder=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        architectures=["T5EncoderModel"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5EncoderModel(config)
    model.save_pretrained(Path(out_dir))
    return Path(out_dir)
