"""T5 text encoding with the scene-boundary tokens (spec 3).

`TextEncoder.from_pretrained(bundle)` loads `bundle/tokenizer` (SentencePiece T5 tokenizer) and
`bundle/text_encoder` (transformers `T5EncoderModel`, safetensors) from local files only, adds
`<end_scene>` and `<start_scene>` as special tokens and resizes the embedding matrix to the tokenizer's
length exactly as the reference does. For T5-XXL (32000 pieces + 100 `<extra_id_*>`, 32128 embedding
rows) that gives ids 32100 / 32101 and *shrinks* the matrix to 32102 rows, so the two new tokens use the
existing rows 32100 / 32101: deterministic, nothing is initialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .weights.errors import WeightsError
from .weights.safetensors_io import read_header, read_json

END_SCENE_TOKEN = "<end_scene>"
START_SCENE_TOKEN = "<start_scene>"
# Order matters: the reference adds them in this order, so <end_scene> gets the lower id.
SCENE_TOKENS = (END_SCENE_TOKEN, START_SCENE_TOKEN)
PAD_TOKEN_ID = 0
EOS_TOKEN_ID = 1


class TextEncoderError(WeightsError):
    """A tokenizer / text-encoder folder that cannot be used as the reference uses T5 (code WEIGHTS)."""


class TextEncoder:
    """T5 tokenizer + T5 encoder. `encode(prompts, L)` -> `(n, L, D)` hidden states in `dtype`.

    Tokenisation: truncation to L, `</s>` appended, right padding with id 0 to exactly L. The encoder
    gets no attention mask (padding is attended), as in CogVideoX and the reference.
    """

    def __init__(self, tokenizer, model, dtype: torch.dtype) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.dtype = dtype

    @classmethod
    def from_pretrained(
        cls,
        bundle_dir: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.bfloat16,
    ) -> TextEncoder:
        bundle = Path(bundle_dir)
        tokenizer_dir, encoder_dir = bundle / "tokenizer", bundle / "text_encoder"
        _check_folders(tokenizer_dir, encoder_dir)
        tokenizer = _load_tokenizer(tokenizer_dir)
        model = _load_encoder(encoder_dir, dtype)
        rows = model.get_input_embeddings().weight.shape[0]
        if rows < len(tokenizer):
            raise TextEncoderError(
                f"{encoder_dir}: the embedding has {rows} rows but the tokenizer with the scene tokens has "
                f"{len(tokenizer)} tokens; growing the matrix would give the scene tokens random embeddings. "
                "The reference's T5-XXL has 32128 rows for 32102 tokens; check that tokenizer/ and "
                "text_encoder/ belong together."
            )
        # As the reference: shrink to len(tokenizer), so the scene tokens keep the existing rows.
        model.resize_token_embeddings(len(tokenizer))
        model.to(device=device, dtype=dtype)
        model.requires_grad_(False)
        model.eval()
        return cls(tokenizer, model, dtype)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def scene_token_ids(self) -> dict[str, int]:
        return {token: self.tokenizer.convert_tokens_to_ids(token) for token in SCENE_TOKENS}

    def tokenize(self, prompts: Sequence[str], max_length: int) -> Tensor:
        """Token ids `(n, max_length)` (int64, CPU): truncated, `</s>` appended, padded with 0."""
        prompts = _check_prompts(prompts)
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        batch = self.tokenizer(
            prompts,
            truncation=True,
            max_length=max_length,
            padding="max_length",
            add_special_tokens=True,
            return_attention_mask=False,
            return_tensors="pt",
        )
        return batch["input_ids"].to(torch.long)

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        """Tokens of each prompt before truncation, `</s>` included (more than L means T5 sees a cut)."""
        batch = self.tokenizer(_check_prompts(prompts), add_special_tokens=True, return_attention_mask=False)
        return [len(ids) for ids in batch["input_ids"]]

    def encode(self, prompts: Sequence[str], max_length: int) -> Tensor:
        """Hidden states `(n, max_length, d_model)` in `self.dtype` on the encoder's device."""
        ids = self.tokenize(prompts, max_length).to(self.device)
        with torch.no_grad():
            hidden = self.model(input_ids=ids).last_hidden_state
        return hidden.to(self.dtype)


def _check_folders(tokenizer_dir: Path, encoder_dir: Path) -> None:
    """The files are there and readable: config.json is JSON, every safetensors header is whole."""
    if not (tokenizer_dir / "spiece.model").is_file() and not (tokenizer_dir / "tokenizer.json").is_file():
        raise TextEncoderError(
            f"{tokenizer_dir}: no T5 tokenizer here (expected spiece.model or tokenizer.json, as in "
            "<CogVideoX-5b snapshot>/tokenizer)"
        )
    read_json(encoder_dir / "config.json", "the T5 encoder's config.json")
    weights = sorted(encoder_dir.glob("*.safetensors"))
    if not weights:
        raise TextEncoderError(
            f"{encoder_dir}: no .safetensors weights; pickle-based .bin weights are not loaded "
            "(convert them with transformers' save_pretrained, which writes safetensors)"
        )
    for file in weights:
        read_header(file)


def _load_tokenizer(tokenizer_dir: Path):
    from transformers import T5Tokenizer

    try:
        tokenizer = T5Tokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    except Exception as e:  # a damaged model file fails in several libraries, with their own messages
        raise TextEncoderError(
            f"{tokenizer_dir / 'spiece.model'}: not a readable SentencePiece model ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); copy tokenizer/ from the CogVideoX-5b snapshot again"
        ) from None
    tokenizer.padding_side = "right"
    tokenizer.add_special_tokens({"additional_special_tokens": list(SCENE_TOKENS)})
    _check_scene_tokens(tokenizer, tokenizer_dir)
    return tokenizer


def _load_encoder(encoder_dir: Path, dtype: torch.dtype):
    from transformers import T5EncoderModel

    try:
        return T5EncoderModel.from_pretrained(
            str(encoder_dir), dtype=dtype, local_files_only=True, use_safetensors=True
        )
    except Exception as e:
        raise TextEncoderError(
            f"{encoder_dir}: the T5 encoder does not load ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "copy text_encoder/ from the CogVideoX-5b snapshot again"
        ) from None


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings (one per segment), not a single string")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty; pass one string per segment")
    wrong = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if wrong:
        raise TypeError(f"prompts must all be strings; items {wrong} are not")
    return prompts


def _check_scene_tokens(tokenizer, tokenizer_dir: Path) -> None:
    """Each scene token must map to one dedicated id and survive tokenisation as a single token."""
    ids = [tokenizer.convert_tokens_to_ids(token) for token in SCENE_TOKENS]
    if tokenizer.unk_token_id in ids or len(set(ids)) != len(ids) or ids[1] != ids[0] + 1:
        raise TextEncoderError(
            f"{tokenizer_dir}: the scene tokens {SCENE_TOKENS} did not get two new ids ({ids})"
        )
    for token, token_id in zip(SCENE_TOKENS, ids, strict=True):
        pieces = tokenizer(f"a{token}b", add_special_tokens=False)["input_ids"]
        if pieces.count(token_id) != 1:
            raise TextEncoderError(
                f"{tokenizer_dir}: {token!r} is not kept as one special token by this tokenizer "
                f"(tokenised 'a{token}b' as {pieces})"
            )
