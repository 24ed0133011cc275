"""T5's tokenizer as the reference ran it (transformers' slow ``T5Tokenizer``, ``legacy=True``; spec 3), on
sentencepiece alone.

Ids: the SentencePiece pieces (T5's model has ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2), then ``<extra_id_99>``
... ``<extra_id_0>`` (``<extra_id_i>`` = pieces + 99 - i), then the tokens added with ``add_special_tokens``
in the order added. Text is first split at the special tokens (the longest match first); every stretch of
text between them is SentencePiece-encoded on its own, so each gets the leading '▁' (what ``legacy=True``
does). The extra ids take the whitespace around them with them (``lstrip``/``rstrip`` in T5's
tokenizer_config.json); the other special tokens do not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

T5_SPECIAL_PIECES = ("<pad>", "</s>", "<unk>")


class SentencePieceT5Tokenizer:
    def __init__(self, model_file: str | Path, extra_ids: int = 100) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        pieces = self.sp.get_piece_size()
        self.special: dict[str, int] = {token: self.sp.piece_to_id(token) for token in T5_SPECIAL_PIECES}
        self.special.update({f"<extra_id_{i}>": pieces + extra_ids - 1 - i for i in range(extra_ids)})
        self.stripping = {f"<extra_id_{i}>" for i in range(extra_ids)}
        self.pad_id, self.eos_id = self.special["<pad>"], self.special["</s>"]
        self._split = self._splitter()

    def __len__(self) -> int:
        return max(self.sp.get_piece_size(), *(i + 1 for i in self.special.values()))

    def _splitter(self) -> re.Pattern[str]:
        tokens = sorted(self.special, key=len, reverse=True)
        return re.compile("(" + "|".join(map(re.escape, tokens)) + ")")

    def add_special_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Gives each new token the next id (one already known keeps its id); returns their ids."""
        for token in tokens:
            if token not in self.special:
                self.special[token] = len(self)
        self._split = self._splitter()
        return [self.special[token] for token in tokens]

    def is_piece(self, token: str) -> bool:
        """Whether SentencePiece's own vocabulary has ``token`` as a piece."""
        return self.sp.piece_to_id(token) != self.sp.unk_id() or token == self.sp.id_to_piece(
            self.sp.unk_id()
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without ``</s>``."""
        parts = self._split.split(text)
        for i, part in enumerate(parts):
            if part in self.stripping:
                if i > 0:
                    parts[i - 1] = parts[i - 1].rstrip()
                if i + 1 < len(parts):
                    parts[i + 1] = parts[i + 1].lstrip()
        ids: list[int] = []
        for part in parts:
            if part in self.special:
                ids.append(self.special[part])
            elif part:
                ids.extend(self.sp.encode(part))
        return ids

    def pieces(self, text: str) -> list[str]:
        """The tokens of ``text`` as strings (special tokens as written)."""
        names = {i: token for token, i in self.special.items()}
        return [names.get(i) or self.sp.id_to_piece(i) for i in self.encode(text)]
