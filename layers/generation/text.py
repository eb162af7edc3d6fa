"""Token ids ↔ text the way transformers does it, and text deltas that never split a character.

The model's own ``tokenizer.json`` through the Rust ``tokenizers`` library (what
``PreTrainedTokenizerFast`` wraps): prompts are encoded with the post-processor's special
tokens (Llama's BOS), completions decoded with ``skip_special_tokens`` and, where
``tokenizer_config.json`` asks for it and the model is not BPE, transformers'
``clean_up_tokenization`` — so a completion's text is ``tokenizer.decode(ids,
skip_special_tokens=True)``, byte for byte. (onnxruntime-genai's own ``Tokenizer.decode``
differs on byte tokens that are not valid UTF-8 alone, which is why it is not used.)

:class:`Detokenizer` turns the growing list of generated ids into deltas: a delta ends before
any trailing U+FFFD (a multi-byte character whose remaining bytes are in the next token), and
holds back text that could be the start of a stop sequence, so the concatenated deltas are
always a prefix of the final text and a stop sequence never leaks to a client.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPLACEMENT = "\ufffd"


def clean_up_tokenization(text: str) -> str:
    """transformers' ``PreTrainedTokenizerBase.clean_up_tokenization`` (WordPiece spacing)."""
    return (text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
            .replace(" 've", "'ve").replace(" 're", "'re"))


class TextCodec:
    """``tokenizer.json`` (+ ``tokenizer_config.json``) of one model: encode and decode."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.config = read_json(folder / "tokenizer_config.json")
        model_type = json.loads(self.tokenizer.to_str()).get("model", {}).get("type")
        self.cleanup = bool(self.config.get("clean_up_tokenization_spaces")) and model_type != "BPE"

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=special).ids

    def decode(self, ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return clean_up_tokenization(text) if self.cleanup else text

    def token_id(self, token: str | None) -> int | None:
        return self.tokenizer.token_to_id(token) if token else None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def special_token(config: dict[str, Any], key: str) -> str | None:
    """``bos_token``/``eos_token`` of ``tokenizer_config.json`` (a string, or an AddedToken dict)."""
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class Detokenizer:
    """Generated ids in, text deltas out (see the module docstring).

    ``push(id)`` returns the text that became final with this token ("" while a character or a
    possible stop sequence is incomplete); ``stopped`` is set once a stop sequence appeared (the
    text is cut before it); ``finish()`` returns what is left.
    """

    def __init__(self, codec: TextCodec, stop: Sequence[str] = ()) -> None:
        self.codec = codec
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.text = ""  # decoded so far (stop-truncated once stopped)
        self.sent = 0  # characters of ``text`` already returned
        self.stopped: str | None = None

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        text = self.codec.decode(self.ids)
        if self.stop:
            start = max(0, self.sent - max(len(s) for s in self.stop))
            hits = [(i, s) for s in self.stop if (i := text.find(s, start)) >= 0]
            if hits:
                cut, self.stopped = min(hits)
                self.text = text[:cut]
                return self._release(len(self.text))
        self.text = text
        end = len(text)
        while end > self.sent and text[end - 1] == REPLACEMENT:
            end -= 1
        end -= self._held(text[:end])
        return self._release(end)

    def finish(self) -> str:
        return self._release(len(self.text))

    def _held(self, text: str) -> int:
        """How many trailing characters could still become a stop sequence."""
        held = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text) - self.sent), held, -1):
                if text.endswith(s[:n]):
                    held = n
                    break
        return held

    def _release(self, end: int) -> str:
        if end <= self.sent:
            return ""
        delta, self.sent = self.text[self.sent:end], end
        return delta
