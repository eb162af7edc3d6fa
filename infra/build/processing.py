"""Build side of ``preprocess``/``postprocess``: the manifest's processing block, its side
files, and raw calibration/validation data run through the runtime's own pre-processing.

What each input kind and task means is theirs (:mod:`infra.kinds`, :mod:`layers.kinds`); this
module only dispatches. The block format is documented in :mod:`layers.processing`. Raw data
(the same code the function runs, so the gate sees what clients will send), by kind:

* text: ``.txt`` (one text per line, no labels) or ``.jsonl`` (``{"text": "...", "label"?: ...}``);
* image: a folder of PNG/JPEG files (searched recursively; a file in a sub-folder is labelled
  with the sub-folder's name) or ``.jsonl`` (``{"image": "<base64>", "label"?: ...}``);

a ``"label"`` is a class name or index, for the accuracy figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from infra import kinds as build_kinds
from infra.build.data import DataError, Dataset
from infra.catalog import ModelSpec
from infra.kinds import ProcessingError
from infra.kinds.text import TOKENIZER_FILE
from layers import kinds
from layers.manifest import sha256_file

__all__ = ["TOKENIZER_FILE", "ProcessingError", "build_block", "is_raw", "label_figures", "load_raw",
           "one_by_one", "row_feeds", "run_gate_data", "with_postprocess"]


def build_block(spec: ModelSpec, sig: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Path]]:
    """(processing block or None, side files by their name in the model directory)."""
    from infra.tasks.build import hf_task, task_section, with_directory_defaults
    from infra.tasks.detect import TaskError

    try:
        task = hf_task(spec)
        if task is not None:  # the directory's own tokenizer, labels and task (infra/tasks)
            spec = with_directory_defaults(spec, task)
    except TaskError as exc:
        raise ProcessingError(str(exc)) from exc
    if spec.preprocess is None and spec.postprocess is None:
        return None, {}
    block: dict[str, Any] = {"model_signature": sig}
    if task is not None:
        try:
            block.update(task_section(task, sig))
        except TaskError as exc:
            raise ProcessingError(str(exc)) from exc
    files: dict[str, Path] = {}
    config = _hf_config(spec)
    if spec.preprocess is not None:
        block["preprocess"], files = build_kinds.kind(spec.preprocess.kind).block(spec.preprocess, sig, config)
    if spec.postprocess is not None:
        block["postprocess"] = build_kinds.task(None).block(spec.postprocess, sig, config)
    block["files"] = {name: sha256_file(path) for name, path in files.items()}
    return block, files


def _hf_config(spec: ModelSpec) -> dict[str, Any]:
    if spec.source_kind != "hf":
        return {}
    from infra.build.hf import load_config

    return load_config(spec.source_path)


# --- raw calibration/validation data -------------------------------------------------------


def is_raw(path: Path) -> bool:
    return path.is_dir() or path.suffix != ".npz"


def load_raw(path: Path, block: dict[str, Any], files: dict[str, Path], *, key: str) -> Dataset:
    """Raw texts/images → the model's input tensors (the runtime's pre-processing), + labels."""
    pre = block.get("preprocess")
    if pre is None:
        raise DataError(f"{key} {path.name} holds raw inputs but the model has no preprocess; give an .npz")
    try:
        items, labels = build_kinds.kind(pre["kind"]).read_items(path, key)
    except (ValueError, OSError) as exc:
        raise DataError(str(exc)) from None
    noun = kinds.input_kind(pre["kind"]).noun
    if not items:
        raise DataError(f"{key} {path} holds no {noun}s")
    raw_inputs = [t["name"] for t in block["model_signature"]["inputs"]]
    tensors = kinds.input_kind(pre["kind"]).preprocessor(pre, files, raw_inputs)(items)
    return Dataset(inputs=tensors, labels=_label_ids(labels, block, key, path))


def _label_ids(labels: list, block: dict[str, Any], key: str, path: Path) -> np.ndarray | None:
    if not labels or all(v is None for v in labels):
        return None
    names_ = (block.get("postprocess") or {}).get("labels") or []
    index = {n: i for i, n in enumerate(names_)}
    out = []
    for v in labels:
        if isinstance(v, int) and not isinstance(v, bool):
            out.append(v)
        elif v in index:
            out.append(index[v])
        else:
            raise DataError(f"{key} {path.name}: label {v!r} is neither a class index nor one of the "
                            f"model's labels {names_}")
    return np.asarray(out, dtype=np.int64)


# --- the gate sees labels and scores --------------------------------------------------------


def one_by_one(data: Dataset, block: dict[str, Any] | None) -> bool:
    """Whether the gate runs ``data``'s rows one at a time (texts: each trimmed to its tokens)."""
    pre = (block or {}).get("preprocess")
    return pre is not None and build_kinds.kind(pre["kind"]).gate_one_by_one and "attention_mask" in data.inputs


def row_feeds(data: Dataset, limit: int | None = None) -> list[dict[str, np.ndarray]]:
    """The first ``limit`` rows as one-row requests, each trimmed to its own tokens."""
    lengths = data.inputs["attention_mask"].sum(axis=1)[:limit]
    return [{k: v[i:i + 1, :max(1, int(n))] for k, v in data.inputs.items()} for i, n in enumerate(lengths)]


def run_gate_data(sess, data: Dataset, block: dict[str, Any] | None) -> list[np.ndarray]:
    """All rows through ``sess`` as the function would run them. Texts go one by one, each
    trimmed to its own tokens (what a one-text request sends): dynamic int8 quantizes
    activations per tensor at run time, so rows padded to the data set's longest text would
    measure another model than the one clients reach."""
    from infra.build import measure

    if not one_by_one(data, block):
        return measure.run_all(sess, data)
    rows = [sess.run(None, feeds) for feeds in row_feeds(data)]
    # per-token outputs ([1, T, C], T differing per text) are judged token by token
    return [np.concatenate([r[j].reshape(-1, r[j].shape[-1]) if r[j].ndim >= 3 else r[j] for r in rows])
            for j in range(len(rows[0]))]


def with_postprocess(block: dict[str, Any] | None, output_names: list[str],
                     outputs: list[np.ndarray]) -> list[np.ndarray]:
    """``outputs`` + what the task adds to the function's answer (classification: the scores
    and label indices, full, no top-k), so the gate's figures cover them too."""
    post = (block or {}).get("postprocess")
    if post is None:
        return outputs
    return build_kinds.task(post.get("task")).gate_outputs(post, output_names, outputs)


def label_figures(block: dict[str, Any] | None, reference: list[np.ndarray],
                  candidate: list[np.ndarray]) -> dict[str, float]:
    """The task's own gate figures between two runs (after :func:`with_postprocess`), e.g.
    classification's ``label_agreement`` and ``max_score_error``; for embeddings, cosine and
    top-10 retrieval agreement (infra/kinds/embeddings.py)."""
    post = (block or {}).get("postprocess")
    if post is None:
        return {}
    return build_kinds.task(post.get("task")).gate_figures(post, reference, candidate)
