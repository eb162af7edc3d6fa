"""Text → token tensors with the Rust ``tokenizers`` library (batch-safe, no Python per token).

The tokenizer is the model's own ``tokenizer.json`` (shipped next to ``model.onnx``), so the
function tokenizes exactly as the model was trained; ``encode_batch`` runs in Rust across
the batch. Padding ``longest`` pads each request to its longest text, ``max_length`` to the
fixed length; with ``truncation`` off, a text longer than ``max_length`` tokens is a 400.

Text the model never sees is not tokenized: each text is first cut to a prefix of
:data:`CHARS_PER_TOKEN` × ``max_length`` characters, ended at a whitespace so no word is split
(a 5 MB string to a ``max_length: 64`` model is tokenized as ~512 characters, not 5 MB). The
cut is exact, not a guess: if the prefix's tokens do not fill ``max_length`` (or, with no
whitespace near the end, the last kept token comes within :data:`MAX_WORD_CHARS` of the cut),
the prefix grows ×4 and is tokenized again, up to the whole text — so what the model gets is
what tokenizing the whole text gives, and time and memory follow ``max_length``, not the text.

Registered as the ``text`` input kind (:mod:`layers.kinds`): a ``text`` BYTES input of UTF-8
strings; in a batch, ``.txt`` (one text a line) and a ``.csv`` text column.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from layers.errors import BadRequest
from layers.kinds import InputKind, register

#: The model inputs a tokenizer can fill, by the names Hugging Face exports use.
TOKEN_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
#: First prefix tried per token of ``max_length`` (English averages ~4 characters a token).
CHARS_PER_TOKEN = 8
#: A cut with no whitespace nearby may split a word; tokens ending this close to it are re-checked
#: (BERT's WordPiece reads a longer word as one [UNK]).
MAX_WORD_CHARS = 100
_GROWTH = 4


class TextPreprocessor:
    """``texts`` (list of str) → ``{input_ids, attention_mask, token_type_ids}`` int64 ``[N, T]``."""

    def __init__(self, tokenizer_path: Path, config: dict[str, Any], model_inputs: list[str]) -> None:
        from tokenizers import Tokenizer

        unknown = [n for n in model_inputs if n not in TOKEN_FIELDS]
        if unknown:
            raise ValueError(f"the model takes {unknown}, which a tokenizer cannot produce "
                             f"(it fills {list(TOKEN_FIELDS)})")
        self.inputs = model_inputs
        self.max_length = int(config["max_length"])
        self.truncation = bool(config["truncation"])
        tok = Tokenizer.from_file(str(tokenizer_path))
        tok.no_truncation()
        if self.truncation:
            tok.enable_truncation(self.max_length)
        pad = tok.padding or {}
        pad_token = pad.get("pad_token") or ("[PAD]" if tok.token_to_id("[PAD]") is not None else "<pad>")
        pad_id = pad.get("pad_id") if pad.get("pad_token") else tok.token_to_id(pad_token)
        tok.enable_padding(pad_id=pad_id or 0, pad_token=pad_token,
                           length=self.max_length if config["padding"] == "max_length" else None)
        self.tokenizer = tok

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        return self.tensors(self.encode(texts))

    def encode(self, texts: list[str]) -> list:
        """The tokenizer's encodings (ids, offsets into each text, masks), padded as configured."""
        first = CHARS_PER_TOKEN * self.max_length
        cuts = [_prefix(t, first) for t in texts]
        encodings = self.tokenizer.encode_batch([c for c, _ in cuts])
        grown = False
        for i, text in enumerate(texts):
            bound, (cut, safe_end) = first, cuts[i]
            while len(cut) < len(text) and not self._complete(encodings[i], safe_end):
                bound *= _GROWTH
                cut, safe_end = cuts[i] = _prefix(text, bound)
                encodings[i], grown = self.tokenizer.encode(cut), True
        if grown and len(texts) > 1:  # padding "longest" pads across the batch: encode it together
            encodings = self.tokenizer.encode_batch([c for c, _ in cuts])
        if not self.truncation:
            for i, e in enumerate(encodings):
                if len(e.ids) > self.max_length:
                    raise BadRequest(
                        f"text {i} has {'at least ' if len(cuts[i][0]) < len(texts[i]) else ''}"
                        f"{len(e.ids)} tokens but the model takes at most "
                        f"{self.max_length}; shorten it (the catalog entry has truncation: false)."
                    )
        return encodings

    def tensors(self, encodings: list) -> dict[str, np.ndarray]:
        return {name: np.asarray([getattr(e, TOKEN_FIELDS[name]) for e in encodings], dtype=np.int64)
                for name in self.inputs}

    @staticmethod
    def token_count(encodings: list) -> int:
        """Tokens the model read (padding excluded): OpenAI's ``usage``."""
        return int(sum(sum(e.attention_mask) for e in encodings))

    def _complete(self, encoding: Any, safe_end: int) -> bool:
        """Does the prefix's encoding already hold what the whole text's encoding would?"""
        mask, special = encoding.attention_mask, encoding.special_tokens_mask
        real = [j for j in range(len(mask)) if mask[j] and not special[j]]
        if not real:
            return False
        if not self.truncation:  # over the limit already: the 400 says so without the rest
            return len(encoding.ids) > self.max_length
        filled = sum(mask) >= self.max_length
        return filled and encoding.offsets[real[-1]][1] <= safe_end


def _prefix(text: str, bound: int) -> tuple[str, int]:
    """``text`` cut to about ``bound`` characters at a whitespace → (prefix, end of whole words)."""
    if len(text) <= bound:
        return text, len(text)
    cut = text[:bound]
    space = max(cut.rfind(" "), cut.rfind("\n"), cut.rfind("\t"))
    if space >= bound // 2:
        return cut[:space], space
    return cut, bound - MAX_WORD_CHARS


class TextKind(InputKind):
    name = noun = "text"
    batch_line_suffixes = (".txt",)
    batch_csv = True
    batch_hint = "upload .txt (one text a line), a .csv text column or a .jsonl of V2 requests"
    probe_items = ("modelfn",)

    def preprocessor(self, config: Mapping[str, Any], files: Mapping[str, Path],
                     raw_inputs: list[str]) -> TextPreprocessor:
        return TextPreprocessor(files[config["tokenizer"]], dict(config), raw_inputs)

    def item(self, index: int, value: Any) -> str:
        if isinstance(value, str):
            return value
        try:
            return bytes(value).decode("utf-8")
        except (UnicodeDecodeError, TypeError):
            raise BadRequest(f"text {index} is not UTF-8; send each text as a UTF-8 string.") from None

    def primer(self, preprocessor: Any) -> str:
        return "modelfn"


TEXT = register(TextKind())
