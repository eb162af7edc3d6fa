"""Text → token tensors with the Rust ``tokenizers`` library (batch-safe, no Python per token).

The tokenizer is the model's own ``tokenizer.json`` (shipped next to ``model.onnx``), so the
function tokenizes exactly as the model was trained; ``encode_batch`` runs in Rust across
the batch. Padding ``longest`` pads each request to its longest text, ``max_length`` to the
fixed length; with ``truncation`` off, a text longer than ``max_length`` tokens is a 400.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from layers.errors import BadRequest

#: The model inputs a tokenizer can fill, by the names Hugging Face exports use.
TOKEN_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


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
        encodings = self.tokenizer.encode_batch(texts)
        if not self.truncation:
            for i, e in enumerate(encodings):
                if len(e.ids) > self.max_length:
                    raise BadRequest(
                        f"text {i} has {len(e.ids)} tokens but the model takes at most "
                        f"{self.max_length}; shorten it (the catalog entry has truncation: false)."
                    )
        return {name: np.asarray([getattr(e, TOKEN_FIELDS[name]) for e in encodings], dtype=np.int64)
                for name in self.inputs}
