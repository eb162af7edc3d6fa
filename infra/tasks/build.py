"""The manifest's processing block for an ``hf:`` source, from the directory itself.

Without ``preprocess``/``postprocess`` keys, a directory's own tokenizer (``tokenizer.json``)
and longest input make the text pre-processing, and its task (:mod:`infra.tasks.detect`)
makes the rest: class labels and scores for classification, one ``embedding`` per text for
embeddings/feature extraction, ``entities`` for token classification. Catalog
``preprocess``/``postprocess`` keys still override what the directory says.
"""

from __future__ import annotations

from typing import Any

from infra.catalog_processing import Postprocess, Preprocess
from infra.tasks import detect
from layers import names

#: a directory that records no longest input (no max_position_embeddings either)
FALLBACK_MAX_LENGTH = 512


def hf_task(spec: Any) -> detect.HfTask | None:
    """The task of an ``hf:`` catalog entry (None for other sources)."""
    if spec.source_kind != "hf":
        return None
    emb = spec.embedding
    return detect.detect(spec.source_path, task=spec.task,
                         pooling=emb.pooling if emb else None, normalize=emb.normalize if emb else None,
                         matryoshka_dims=emb.matryoshka_dims if emb else None)


def with_directory_defaults(spec: Any, task: detect.HfTask) -> Any:
    """``spec`` with ``preprocess`` (and, for classification, ``postprocess``) filled in from the
    directory where the catalog leaves them out."""
    update: dict[str, Any] = {}
    if spec.preprocess is None:
        if task.tokenizer is None:
            raise detect.TaskError(f"{spec.source_path} has no tokenizer.json; save the tokenizer next to the "
                                   "model (tokenizer.save_pretrained(dir)) or give preprocess.tokenizer")
        update["preprocess"] = Preprocess(tokenizer=task.tokenizer,
                                          max_length=min(task.max_length or FALLBACK_MAX_LENGTH, 8192))
    if task.task == detect.CLASSIFICATION and spec.postprocess is None:
        update["postprocess"] = Postprocess()
    if task.task != detect.CLASSIFICATION and spec.postprocess is not None:
        raise detect.TaskError(f"'postprocess' scores classes; this model serves {task.task} "
                               f"({'embedding vectors' if task.task in detect.POOLED else 'entities'}): remove it")
    return spec.model_copy(update=update) if update else spec


def task_section(task: detect.HfTask, sig: dict[str, Any]) -> dict[str, Any]:
    """The block's ``task`` record and, for the tasks registered in :mod:`layers.kinds` /
    :mod:`infra.kinds` (embeddings, feature-extraction, token-classification), their
    ``postprocess`` block; classification's comes from the catalog's ``postprocess``."""
    record = task.to_dict()
    if task.task in detect.POOLED:
        (out,) = [t for t in sig["outputs"] if t["name"] == names.EMBEDDING_OUTPUT]
        record["dimensions"] = int(out["shape"][-1])
        full = record["dimensions"]
        too_long = [d for d in task.matryoshka_dims if d > full > 0]
        if too_long:
            raise detect.TaskError(f"embedding.matryoshka_dims {too_long} must be shorter than the model's "
                                   f"{full}-dimensional vectors (the full size is always served)")
        if task.matryoshka_dims:  # the full size is always served, so it is no cut
            record["matryoshka_dims"] = [d for d in task.matryoshka_dims if d != full]
            if not record["matryoshka_dims"]:
                del record["matryoshka_dims"]
        post = {"task": task.task, "output": names.EMBEDDING_OUTPUT, "dimensions": record["dimensions"],
                "pooling": list(task.pooling), "normalize": task.normalize}
        return {"task": record, "postprocess": post}
    if task.task == detect.TOKEN_CLASSIFICATION:
        logits = next(t for t in sig["outputs"] if t["name"] == "logits")
        classes = int(logits["shape"][-1])
        labels = list(task.labels) or [str(i) for i in range(classes)]
        if classes >= 0 and len(labels) != classes:
            raise detect.TaskError(f"config.json's id2label has {len(labels)} labels but the model scores "
                                   f"{classes} classes per token; fix id2label")
        return {"task": record, "postprocess": {"task": task.task, "output": "logits", "labels": labels,
                                                "aggregation": "simple", "ignore_labels": ["O"]}}
    return {"task": record}
