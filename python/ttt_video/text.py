"""T5 text encoding with the scene-boundary tokens (spec 3).

`TextEncoder.from_pretrained(bundle)` loads `bundle/tokenizer` (T5's SentencePiece model, spiece.model)
and `bundle/text_encoder` (a transformers `T5EncoderModel` folder, safetensors) from local files only, adds
`<end_scene>` and `<start_scene>` as special tokens and resizes the embedding matrix to the tokenizer's
length exactly as the reference does. For T5-XXL (32000 pieces + 100 `<extra_id_*>`, 32128 embedding
rows) that gives ids 32100 / 32101 and *shrinks* the matrix to 32102 rows, so the two new tokens use the
existing rows 32100 / 32101: deterministic, nothing is initialised.

Neither half imports transformers (2.5 s to import, most of the CPU demo's start-up): the tokenizer is
`ttt_video.t5_tokenizer` on sentencepiece, the encoder `ttt_video.t5` (in float32 bit for bit transformers'
T5 with eager attention; tests check both against transformers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .t5 import T5Encoder, load_t5_encoder
from .t5_tokenizer import SentencePieceT5Tokenizer
from .weights.errors import WeightsError
from .weights.safetensors_io import read_header, read_json

END_SCENE_TOKEN = "<end_scene>"
START_SCENE_TOKEN = "<start_scene>"
# Order matters: the reference adds them in this order, so <end_scene> gets the lower id.
SCENE_TOKENS = (END_SCENE_TOKEN, START_SCENE_TOKEN)


class TextEncoderError(WeightsError):
    """A tokenizer / text-encoder folder that cannot be used as the reference uses T5 (code WEIGHTS)."""


class TextEncoder:
    """T5 tokenizer + T5 encoder. `encode(prompts, L)` -> `(n, L, D)` hidden states in `dtype`.

    Tokenisation: truncation to L, `</s>` appended, right padding with id 0 to exactly L. The encoder
    gets no attention mask (padding is attended), as in CogVideoX and the reference.
    """

    def __init__(self, tokenizer: SentencePieceT5Tokenizer, model: T5Encoder, dtype: torch.dtype) -> None:
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
        model = load_t5_encoder(encoder_dir, dtype)
        rows = model.shared.weight.shape[0]
        if rows < len(tokenizer):
            raise TextEncoderError(
                f"{encoder_dir}: the embedding has {rows} rows but the tokenizer with the scene tokens has "
                f"{len(tokenizer)} tokens; growing the matrix would give the scene tokens random embeddings. "
                "The reference's T5-XXL has 32128 rows for 32102 tokens; check that tokenizer/ and "
                "text_encoder/ belong together."
            )
        # As the reference: shrink to len(tokenizer), so the scene tokens keep the existing rows.
        model.shrink_vocabulary(len(tokenizer))
        return cls(tokenizer, model.to(device=device), dtype)

    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    @property
    def width(self) -> int:
        """The hidden size D of the encoder (4096 for T5-XXL)."""
        return self.model.config.d_model

    @property
    def scene_token_ids(self) -> dict[str, int]:
        return {token: self.tokenizer.special[token] for token in SCENE_TOKENS}

    def tokenize(self, prompts: Sequence[str], max_length: int) -> Tensor:
        """Token ids `(n, max_length)` (int64, CPU): truncated, `</s>` appended, padded with 0."""
        prompts = _check_prompts(prompts)
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        t = self.tokenizer
        rows = [[*t.encode(p)[: max_length - 1], t.eos_id] for p in prompts]
        return torch.tensor([row + [t.pad_id] * (max_length - len(row)) for row in rows], dtype=torch.long)

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        """Tokens of each prompt before truncation, `</s>` included (more than L means T5 sees a cut)."""
        return [len(self.tokenizer.encode(p)) + 1 for p in _check_prompts(prompts)]

    def encode(self, prompts: Sequence[str], max_length: int) -> Tensor:
        """Hidden states `(n, max_length, d_model)` in `self.dtype` on the encoder's device."""
        ids = self.tokenize(prompts, max_length).to(self.device)
        with torch.no_grad():
            hidden = self.model(ids)
        return hidden.to(self.dtype)


def _check_folders(tokenizer_dir: Path, encoder_dir: Path) -> None:
    """The files are there and readable: config.json is JSON, every safetensors header is whole."""
    if not (tokenizer_dir / "spiece.model").is_file():
        raise TextEncoderError(
            f"{tokenizer_dir}: no T5 tokenizer here (expected spiece.model, the SentencePiece model of "
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


def _load_tokenizer(tokenizer_dir: Path) -> SentencePieceT5Tokenizer:
    model_file = tokenizer_dir / "spiece.model"
    config_file = tokenizer_dir / "tokenizer_config.json"
    config = read_json(config_file, "the tokenizer's config") if config_file.is_file() else {}
    try:
        tokenizer = SentencePieceT5Tokenizer(model_file, extra_ids=int(config.get("extra_ids", 100)))
    except (OSError, RuntimeError) as e:  # sentencepiece raises RuntimeError (or OSError) for a bad file
        raise TextEncoderError(
            f"{model_file}: not a readable SentencePiece model ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); copy tokenizer/ from the CogVideoX-5b snapshot again"
        ) from None
    taken = [token for token in SCENE_TOKENS if token in tokenizer.special or tokenizer.is_piece(token)]
    if taken:
        raise TextEncoderError(
            f"{tokenizer_dir}: the scene tokens {taken} are already in this tokenizer's vocabulary, so they would "
            "not get the two new ids the model was trained with; use CogVideoX-5b's tokenizer/"
        )
    tokenizer.add_special_tokens(SCENE_TOKENS)
    return tokenizer


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
