"""Token-classification logits → entities, as ``transformers.pipeline("token-classification",
aggregation_strategy="simple")`` makes them (its results are what users compare against).

Per token (special and padding tokens skipped): softmax over the classes, the best class
and its score; the token's text is its vocabulary entry (the original characters for an
unknown token). Adjacent tokens group while their tag (the label without ``B-``/``I-``)
stays the same and the next one is not a ``B-``; a group's score is the mean of its tokens',
its ``word`` the tokens joined by the tokenizer's decoder, ``start``/``end`` the character
offsets of its first and last token. Groups labelled ``O`` are dropped. Each entity also
carries ``text``: the exact characters ``text[start:end]`` of the input.

Registered as the ``token-classification`` task (:mod:`layers.kinds`): its ``entities``
output (BYTES ``[-1]``, one JSON list per text) sits beside the raw ``logits``. It reads the
text kind's encodings (offsets, special-token masks) from the request's
:class:`~layers.kinds.Context`, so nothing is tokenized twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from layers import names
from layers.kinds import Context, Postprocessor, Task, register
from layers.kinds.classification import softmax


def _tag(label: str) -> tuple[str, str]:
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


class EntityAggregator:
    """``(texts, encodings, logits [N, T, C])`` → one list of entity dicts per text."""

    def __init__(self, config: dict[str, Any], tokenizer: Any) -> None:
        self.labels = [str(x) for x in config["labels"]]
        self.ignore = set(config.get("ignore_labels") or ["O"])
        self.tokenizer = tokenizer
        unk = getattr(getattr(tokenizer, "model", None), "unk_token", None)
        self.unk_id = tokenizer.token_to_id(unk) if unk else None

    def _join(self, tokens: list[str]) -> str:
        decoder = self.tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def one(self, text: str, encoding: Any, logits: np.ndarray) -> list[dict[str, Any]]:
        scores = softmax(logits)
        tokens = []
        for i, (tid, special, attend) in enumerate(zip(encoding.ids, encoding.special_tokens_mask,
                                                        encoding.attention_mask, strict=True)):
            if special or not attend:
                continue
            start, end = encoding.offsets[i]
            word = text[start:end] if tid == self.unk_id else encoding.tokens[i]
            best = int(scores[i].argmax())
            tokens.append((self.labels[best], float(scores[i, best]), word, int(start), int(end)))
        groups: list[list[tuple]] = []
        for tok in tokens:
            if groups:
                bi, tag = _tag(tok[0])
                if tag == _tag(groups[-1][-1][0])[1] and bi != "B":
                    groups[-1].append(tok)
                    continue
            groups.append([tok])
        entities = []
        for g in groups:
            label = g[0][0].split("-", 1)[-1]
            if label in self.ignore or g[0][0] in self.ignore:
                continue
            start, end = g[0][3], g[-1][4]
            entities.append({"entity_group": label, "score": float(np.mean([t[1] for t in g])),
                             "word": self._join([t[2] for t in g]), "start": start, "end": end,
                             "text": text[start:end]})
        return entities

    def __call__(self, texts: list[str], encodings: list[Any], logits: np.ndarray) -> list[list[dict[str, Any]]]:
        return [self.one(t, e, logits[i, :len(e.ids)]) for i, (t, e) in enumerate(zip(texts, encodings, strict=True))]


def to_tensor(entities: list[list[dict[str, Any]]]) -> np.ndarray:
    """One JSON string per text: the V2 ``entities`` BYTES output."""
    out = np.empty(len(entities), dtype=object)
    out[:] = [json.dumps(e, ensure_ascii=False) for e in entities]
    return out


class _EntitiesPost(Postprocessor):
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.needs = (self.config["output"],)
        self._aggregator: EntityAggregator | None = None

    def __call__(self, raw: dict[str, np.ndarray], context: Context) -> dict[str, np.ndarray]:
        if context.encodings is None or context.preprocessor is None:
            raise ValueError("token classification needs the text kind's encodings")
        if self._aggregator is None:
            self._aggregator = EntityAggregator(self.config, context.preprocessor.tokenizer)
        entities = self._aggregator(context.items, context.encodings, raw[self.config["output"]])
        return {names.ENTITIES_OUTPUT: to_tensor(entities)}


class TokenClassificationTask(Task):
    name = "token-classification"

    def public_outputs(self, raw_outputs: list[dict[str, Any]],
                       config: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [*raw_outputs, {"name": names.ENTITIES_OUTPUT, "datatype": "BYTES", "shape": [-1]}]

    def postprocessor(self, config: Mapping[str, Any]) -> Postprocessor:
        return _EntitiesPost(config)


TOKEN_CLASSIFICATION = register(TokenClassificationTask())
