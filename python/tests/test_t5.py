"""The plain-PyTorch T5 encoder and the sentencepiece tokenizer against transformers' (the independent
implementation the reference ran), and the encoder's loading errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ttt_video.demo.tiny_parts import make_tiny_text_encoder
from ttt_video.t5 import load_t5_encoder, relative_position_buckets
from ttt_video.text import SCENE_TOKENS, TextEncoder
from ttt_video.weights.errors import WeightsError

PROMPTS = [
    "A small brown mouse runs across the kitchen floor.<end_scene>",
    "<start_scene>The grey cat sits on the windowsill.<end_scene>",
    "<start_scene>  Rain   taps softly <end_scene> and the kettle whistles  ",
    "a mouse <extra_id_0> a cat<extra_id_12>  tea </s> end",
    "<pad>x<unk>y",
    "\ufb01ne \uff34\uff4f\uff4d caf\u00e9 \u2014 na\u00efve",
    "",
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("t5")
    make_tiny_text_encoder(root / "text_encoder", root / "tokenizer", seed=1, d_model=32)
    return root


def transformers_encoder(bundle: Path, dtype: torch.dtype, attention: str):
    from transformers import T5EncoderModel

    model = T5EncoderModel.from_pretrained(
        bundle / "text_encoder", dtype=torch.float32, attn_implementation=attention
    )
    return model.to(dtype).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_encoder_is_transformers_t5(bundle, dtype, single_thread):
    """float32: identical to transformers' T5 with eager attention. bfloat16: the softmax runs in fp32 as the
    reference's transformers 4.47 ran it (transformers 5 runs it in bf16), so within 1e-2 (relative L2) of
    both of transformers' attentions."""
    ids = torch.randint(0, 384, (3, 40), generator=torch.Generator().manual_seed(0))
    mine = load_t5_encoder(bundle / "text_encoder", dtype)
    assert {p.dtype for p in mine.parameters()} == {dtype}
    with torch.no_grad():
        got = mine(ids)
        eager = transformers_encoder(bundle, dtype, "eager")(input_ids=ids).last_hidden_state
        sdpa = transformers_encoder(bundle, dtype, "sdpa")(input_ids=ids).last_hidden_state
    assert got.dtype == dtype
    if dtype == torch.float32:
        assert torch.equal(got, eager)
        torch.testing.assert_close(got, sdpa, rtol=1e-5, atol=1e-5)
    else:
        for want in (eager, sdpa):  # bf16 keeps 8 bits: relative L2 error of the whole output
            assert ((got.float() - want.float()).norm() / want.float().norm()).item() < 1e-2


def test_relative_position_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    position = torch.arange(300)
    relative = position[None, :] - position[:, None]
    want = T5Attention._relative_position_bucket(
        relative, bidirectional=True, num_buckets=32, max_distance=128
    )
    assert torch.equal(relative_position_buckets(300, 32, 128, "cpu"), want)


def test_tokenizer_is_transformers_t5_tokenizer(bundle):
    """Scene tokens, extra ids (which take the whitespace around them), </s>, <pad> and <unk> written in
    the text, NFKC normalisation: the ids transformers' T5Tokenizer gives."""
    from transformers import T5Tokenizer

    reference = T5Tokenizer.from_pretrained(str(bundle / "tokenizer"), local_files_only=True)
    reference.add_special_tokens({"additional_special_tokens": list(SCENE_TOKENS)})
    text = TextEncoder.from_pretrained(bundle, dtype=torch.float32)
    assert len(text.tokenizer) == len(reference)
    for prompt in PROMPTS:
        want = reference(prompt, add_special_tokens=False)["input_ids"]
        assert text.tokenizer.encode(prompt) == want, prompt
    assert text.token_counts(PROMPTS) == [len(reference(p)["input_ids"]) for p in PROMPTS]


def break_weights(bundle: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "text_encoder"
    folder.mkdir(parents=True)
    config = json.loads((bundle / "text_encoder" / "config.json").read_text())
    state = load_file(bundle / "text_encoder" / "model.safetensors")
    config, state = change(config, state)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_loading_errors_name_the_problem(bundle, tmp_path):
    cases = [
        (lambda c, s: (c, {k: v for k, v in s.items() if "block.1." not in k}), "missing"),
        (lambda c, s: (c, {**s, "decoder.final_layer_norm.weight": torch.ones(32)}), "unexpected"),
        (lambda c, s: ({**c, "d_ff": 48}, s), "size mismatch"),
        (lambda c, s: ({**c, "feed_forward_proj": "relu"}, s), "v1.1"),
        (lambda c, s: ({k: v for k, v in c.items() if k != "num_heads"}, s), "num_heads"),
    ]
    for k, (change, words) in enumerate(cases):
        folder = break_weights(bundle, tmp_path / str(k), change)
        with pytest.raises(WeightsError, match=words):
            load_t5_encoder(folder, torch.float32)
