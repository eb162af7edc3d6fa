"""Build side of the ``text`` input kind: ``preprocess: {tokenizer, max_length, padding, truncation}``.

The tokenizer (a ``tokenizer.json``, or the Hugging Face directory holding one) ships next to
``model.onnx``; the model must take the INT64 inputs a tokenizer fills. Raw calibration and
validation data: ``.txt`` (one text a line, no labels) or ``.jsonl`` (``{"text": ..., "label"?: ...}``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from infra.kinds import BuildKind, ProcessingError, register
from layers.kinds.text import TOKEN_FIELDS

TOKENIZER_FILE = "tokenizer.json"


def tokenizer_file(path: Path) -> Path:
    """``tokenizer.json`` itself, or inside a Hugging Face directory."""
    return path / TOKENIZER_FILE if path.is_dir() else path


class TextBuildKind(BuildKind):
    name = "text"
    selector = "tokenizer"
    choice = "'tokenizer' (text in)"
    catalog_fields: ClassVar[dict[str, Any]] = {
        "tokenizer": (Path | None, None),
        "max_length": (int, Field(default=128, ge=1, le=8192)),
        "padding": (Literal["longest", "max_length"], "longest"),
        "truncation": (bool, True),
    }
    raw_data_suffixes = (".txt", ".jsonl")
    libraries = ("tokenizers",)
    gate_one_by_one = True

    def resolve(self, pre: Any, root: Path) -> Any:
        if pre.tokenizer is None or pre.tokenizer.is_absolute():
            return pre
        return pre.model_copy(update={"tokenizer": root / pre.tokenizer})

    def check(self, pre: Any, where: str) -> list[str]:
        if pre.tokenizer is not None and not tokenizer_file(pre.tokenizer).is_file():
            return [f"{where}: key 'preprocess.tokenizer': {tokenizer_file(pre.tokenizer)} does not "
                    "exist; point it at a tokenizer.json or the Hugging Face directory holding one "
                    "(tokenizer.save_pretrained writes it)"]
        return []

    def digests(self, pre: Any) -> dict[str, str]:
        from layers.manifest import sha256_file

        return {} if pre.tokenizer is None else {"tokenizer": sha256_file(tokenizer_file(pre.tokenizer))}

    def block(self, pre: Any, sig: dict[str, Any], model_config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
        bad = [t["name"] for t in sig["inputs"] if t["name"] not in TOKEN_FIELDS or t["datatype"] != "INT64"]
        if bad:
            raise ProcessingError(f"preprocess.tokenizer fills INT64 {list(TOKEN_FIELDS)}, but the model's inputs "
                                  f"{bad} are not among them; export the model with those input names")
        limit = model_config.get("max_position_embeddings")
        if isinstance(limit, int) and pre.max_length > limit:
            raise ProcessingError(f"preprocess.max_length {pre.max_length} exceeds the model's "
                                  f"max_position_embeddings {limit}; lower it")
        return ({"kind": self.name, "tokenizer": TOKENIZER_FILE, "max_length": pre.max_length,
                 "padding": pre.padding, "truncation": pre.truncation},
                {TOKENIZER_FILE: tokenizer_file(pre.tokenizer)})

    def probe_sizes(self, pre_block: Mapping[str, Any]) -> dict[str, int]:
        return {"sequence": int(pre_block["max_length"])}

    def read_items(self, path: Path, key: str) -> tuple[list, list]:
        if path.is_dir():
            raise ValueError(f"{key} {path} is a folder; texts come as .txt (one a line) or .jsonl")
        if path.suffix == ".txt":
            return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()], []
        return read_jsonl(path, key, self.name, "text", lambda v: v)

    def step_files(self, pre_block: Mapping[str, Any], step_dir: Path) -> dict[str, Path]:
        return {pre_block["tokenizer"]: step_dir / pre_block["tokenizer"]}


def read_jsonl(path: Path, key: str, field: str, what: str, decode) -> tuple[list, list]:
    """``{"<field>": <what>, "label"?: ...}`` per line → (decoded items, labels)."""
    items, labels = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            items.append(decode(obj[field]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{key} {path.name} line {n}: expected {{\"{field}\": "
                             f"{what}, \"label\"?: ...}} ({exc})") from None
        labels.append(obj.get("label"))
    return items, labels


TEXT = register(TextBuildKind())
