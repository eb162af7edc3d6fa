"""Build side of ``preprocess``/``postprocess``: the manifest's processing block, its side
files, and raw calibration/validation data run through the runtime's own pre-processing.

The block format is documented in :mod:`layers.processing`. Raw data (the same code the
function runs, so the gate sees what clients will send):

* ``.txt``: one text per line (no labels);
* ``.jsonl``: one object per line, ``{"text": "..."}`` or ``{"image": "<base64>"}``, with an
  optional ``"label"`` (a class name or index) for the accuracy figure;
* a folder of PNG/JPEG files (searched recursively); a file in a sub-folder is labelled
  with the sub-folder's name.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from infra.build.data import DataError, Dataset
from infra.catalog import ModelSpec
from infra.catalog_processing import tokenizer_file
from layers import names
from layers.manifest import sha256_file
from layers.processing.post import Postprocessor

TOKENIZER_FILE = "tokenizer.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ProcessingError(ValueError):
    """``preprocess``/``postprocess`` do not fit the model; the message says how to fix it."""


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
    if spec.preprocess is not None:
        block["preprocess"], files = _preprocess(spec, sig)
    if spec.postprocess is not None:
        block["postprocess"] = _postprocess(spec, sig)
    block["files"] = {name: sha256_file(path) for name, path in files.items()}
    return block, files


def _preprocess(spec: ModelSpec, sig: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    from layers.processing.text import TOKEN_FIELDS

    pre = spec.preprocess
    inputs = sig["inputs"]
    if pre.kind == "text":
        bad = [t["name"] for t in inputs if t["name"] not in TOKEN_FIELDS or t["datatype"] != "INT64"]
        if bad:
            raise ProcessingError(f"preprocess.tokenizer fills INT64 {list(TOKEN_FIELDS)}, but the model's inputs "
                                  f"{bad} are not among them; export the model with those input names")
        limit = _hf_config(spec).get("max_position_embeddings")
        if isinstance(limit, int) and pre.max_length > limit:
            raise ProcessingError(f"preprocess.max_length {pre.max_length} exceeds the model's "
                                  f"max_position_embeddings {limit}; lower it")
        return ({"kind": "text", "tokenizer": TOKENIZER_FILE, "max_length": pre.max_length,
                 "padding": pre.padding, "truncation": pre.truncation},
                {TOKENIZER_FILE: tokenizer_file(pre.tokenizer)})
    img = pre.image
    if len(inputs) != 1 or inputs[0]["datatype"] != "FP32" or len(inputs[0]["shape"]) != 4:
        raise ProcessingError(f"preprocess.image fills one FP32 [N, C, H, W] (or NHWC) input; the model "
                              f"takes {[(t['name'], t['datatype'], t['shape']) for t in inputs]}")
    want = [len(img.mean), *img.size] if img.layout == "NCHW" else [*img.size, len(img.mean)]
    got = inputs[0]["shape"][1:]
    if any(g >= 0 and g != w for g, w in zip(got, want, strict=True)):
        raise ProcessingError(f"preprocess.image gives {img.layout} {want} per image but the model's input "
                              f"{inputs[0]['name']!r} is {got} (-1 = any); fix size, layout or the "
                              "number of mean/std values")
    return ({"kind": "image", "size": list(img.size), "mean": list(img.mean), "std": list(img.std),
             "layout": img.layout}, {})


def _hf_config(spec: ModelSpec) -> dict[str, Any]:
    if spec.source_kind != "hf":
        return {}
    from infra.build.hf import load_config

    return load_config(spec.source_path)


def _postprocess(spec: ModelSpec, sig: dict[str, Any]) -> dict[str, Any]:
    post = spec.postprocess
    outputs = {t["name"]: t for t in sig["outputs"]}
    clash = [n for n in (names.LABEL_OUTPUT, names.SCORES_OUTPUT) if n in outputs]
    if clash:
        raise ProcessingError(f"the model already has output(s) {clash}; postprocess adds outputs by "
                              "those names, so rename the model's outputs")
    scored = [t for t in sig["outputs"] if t["datatype"] in ("FP32", "FP16", "FP64") and len(t["shape"]) == 2]
    if post.output is not None and post.output not in outputs:
        raise ProcessingError(f"postprocess.output {post.output!r} is not an output; the model gives {list(outputs)}")
    target = outputs[post.output] if post.output else (scored[0] if scored else None)
    if target is None or target not in scored:
        raise ProcessingError(f"postprocess needs a float [N, C] class-score output; the model gives "
                              f"{[(t['name'], t['shape']) for t in sig['outputs']]} (set postprocess.output)")
    classes = target["shape"][1]
    labels = _labels(spec, classes)
    if classes >= 0 and len(labels) != classes:
        raise ProcessingError(f"postprocess has {len(labels)} labels but output {target['name']!r} scores "
                              f"{classes} classes; give one label per class, class 0 first")
    return {"output": target["name"], "softmax": post.softmax, "labels": labels, "top_k": post.top_k}


def _labels(spec: ModelSpec, classes: int) -> list[str]:
    post = spec.postprocess
    if post.labels is not None:
        return list(post.labels)
    if post.labels_file is not None:
        return [line.strip() for line in post.labels_file.read_text().splitlines() if line.strip()]
    id2label = _hf_config(spec).get("id2label")
    if isinstance(id2label, dict) and id2label:
        return [str(id2label[k]) for k in sorted(id2label, key=int)]
    if classes < 0:
        raise ProcessingError("the class count is dynamic; give postprocess.labels or labels_file")
    return [str(i) for i in range(classes)]


# --- raw calibration/validation data -------------------------------------------------------


def is_raw(path: Path) -> bool:
    return path.is_dir() or path.suffix != ".npz"


def load_raw(path: Path, block: dict[str, Any], files: dict[str, Path], *, key: str) -> Dataset:
    """Raw texts/images → the model's input tensors (the runtime's pre-processing), + labels."""
    pre = block.get("preprocess")
    if pre is None:
        raise DataError(f"{key} {path.name} holds raw inputs but the model has no preprocess; give an .npz")
    items, labels = _read_items(path, pre["kind"], key)
    if not items:
        raise DataError(f"{key} {path} holds no {pre['kind']}s")
    raw_inputs = [t["name"] for t in block["model_signature"]["inputs"]]
    if pre["kind"] == "text":
        from layers.processing.text import TextPreprocessor

        tensors = TextPreprocessor(files[TOKENIZER_FILE], pre, raw_inputs)(items)
    else:
        from layers.processing.image import ImagePreprocessor

        tensors = ImagePreprocessor(pre, raw_inputs[0])(items)
    return Dataset(inputs=tensors, labels=_label_ids(labels, block, key, path))


def _read_items(path: Path, kind: str, key: str) -> tuple[list, list]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        labels = [p.parent.name if p.parent != path else None for p in found]
        return [p.read_bytes() for p in found], labels
    if path.suffix == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()], []
    items, labels = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            value = obj[kind]
            items.append(value if kind == "text" else base64.b64decode(value, validate=True))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{key} {path.name} line {n}: expected {{\"{kind}\": "
                            f"{'text' if kind == 'text' else 'base64 image'}, \"label\"?: ...}} ({exc})") from None
        labels.append(obj.get("label"))
    return items, labels


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


def run_gate_data(sess, data: Dataset, block: dict[str, Any] | None) -> list[np.ndarray]:
    """All rows through ``sess`` as the function would run them. Texts go one by one, each
    trimmed to its own tokens (what a one-text request sends): dynamic int8 quantizes
    activations per tensor at run time, so rows padded to the data set's longest text would
    measure another model than the one clients reach."""
    from infra.build import measure

    pre = (block or {}).get("preprocess")
    if pre is None or pre["kind"] != "text" or "attention_mask" not in data.inputs:
        return measure.run_all(sess, data)
    lengths = data.inputs["attention_mask"].sum(axis=1)
    rows = [sess.run(None, {k: v[i:i + 1, :max(1, int(n))] for k, v in data.inputs.items()})
            for i, n in enumerate(lengths)]
    # per-token outputs ([1, T, C], T differing per text) are judged token by token
    return [np.concatenate([r[j].reshape(-1, r[j].shape[-1]) if r[j].ndim >= 3 else r[j] for r in rows])
            for j in range(len(rows[0]))]


def with_postprocess(block: dict[str, Any] | None, output_names: list[str],
                     outputs: list[np.ndarray]) -> list[np.ndarray]:
    """``outputs`` + the scores and label indices the function would return (full, no top-k),
    so the gate's top-1 agreement and error figures cover them too."""
    post = (block or {}).get("postprocess")
    if post is None:
        return outputs
    scores = Postprocessor({**post, "top_k": None})(outputs[output_names.index(post["output"])])
    return [*outputs, scores[names.SCORES_OUTPUT], scores[names.SCORES_OUTPUT].argmax(axis=-1)]


def label_figures(block: dict[str, Any] | None, reference: list[np.ndarray],
                  candidate: list[np.ndarray]) -> dict[str, float]:
    """``label_agreement`` and ``max_score_error`` between two runs (after :func:`with_postprocess`);
    for embeddings, cosine and top-10 retrieval agreement (:mod:`infra.tasks.embedding_gate`)."""
    task = ((block or {}).get("task") or {}).get("task")
    if task in ("embeddings", "feature-extraction"):
        from infra.tasks.embedding_gate import figures

        return figures(reference[0], candidate[0])
    if (block or {}).get("postprocess") is None:
        return {}
    return {"label_agreement": float(np.mean(reference[-1] == candidate[-1])),
            "max_score_error": float(np.max(np.abs(reference[-2] - candidate[-2]), initial=0.0))}
