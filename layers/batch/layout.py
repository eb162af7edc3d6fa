"""Where things live in the batch bucket, and which S3 events are ours.

``<model>/in/<key>`` → ``<model>/out/<key>.jsonl`` or ``<model>/errors/<key>.json``.

A key with a ``.``/``..`` or empty segment (``in/a/../../other-model/out/x.jsonl``,
``in/a//b.csv``) is harmless inside S3, but copied into an output key it would make
``aws s3 sync`` write outside this model's folder on a disk. Such a key is not run: it gets an
error record naming it, under one flat, percent-encoded name (``errors/a%2F..%2F…json``).

Objects outside this function's ``<model>/in/`` prefix are **skipped** (logged and counted,
nothing written): the deployed notification filter never sends them, and writing an error
record under another model's prefix would put files where that model's owners do not
expect them; processing our own ``out/`` or ``errors/`` objects would loop forever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus

from layers import names

TENSOR_SUFFIXES = (".npz", ".npy", ".csv", ".jsonl")
"""Batch files of tensors or V2 requests; the raw-input suffixes (``.txt``, ``.png``, ...) are
the registered input kinds' (:func:`layers.kinds.batch_suffixes`)."""


@dataclass(frozen=True)
class ObjectRef:
    """One object version named by an S3 event (key already URL-decoded)."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str = ""
    size: int = 0

    @property
    def identity(self) -> str:
        """What makes this version unique: its version id, or its ETag in unversioned buckets."""
        return self.version_id or self.etag

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def idempotency_payload(self) -> dict[str, str]:
        return {"bucket": self.bucket, "key": self.key, "version": self.identity}


@dataclass(frozen=True)
class BatchPaths:
    """The keys one input object maps to."""

    model: str
    relative: str

    @property
    def input_key(self) -> str:
        return f"{self.model}/{names.BATCH_IN}/{self.relative}"

    @property
    def key_problem(self) -> str | None:
        """Why this key must not be copied into output keys (None: it is safe)."""
        segments = self.relative.split("/")
        if any(s in (".", "..") for s in segments):
            return "it has a '.' or '..' path segment"
        if "" in segments:
            return "it has an empty path segment (a leading '/' or '//')"
        return None

    @property
    def _output_relative(self) -> str:
        return self.relative if self.key_problem is None else quote(self.relative, safe="")

    @property
    def out_key(self) -> str:
        return f"{self.model}/{names.BATCH_OUT}/{self._output_relative}.jsonl"

    @property
    def error_key(self) -> str:
        return f"{self.model}/{names.BATCH_ERRORS}/{self._output_relative}.json"


def route(key: str, model_name: str) -> BatchPaths | None:
    """The paths for ``key`` if it is an input of ``model_name``, else None (not ours: skip)."""
    prefix = f"{model_name}/{names.BATCH_IN}/"
    if not key.startswith(prefix) or key.endswith("/"):
        return None
    return BatchPaths(model=model_name, relative=key[len(prefix):])


def suffix_of(key: str) -> str:
    dot = key.rfind(".")
    return key[dot:].lower() if dot > key.rfind("/") else ""


def object_from_s3_record(record: Any) -> ObjectRef:
    """An :class:`~aws_lambda_powertools.utilities.data_classes.s3_event.S3EventRecord` → ref."""
    obj = record.s3.get_object
    return ObjectRef(
        bucket=record.s3.bucket.name,
        key=unquote_plus(obj.key),
        version_id=obj.version_id or None,
        etag=obj.etag.strip('"'),
        size=int(obj.get("size") or 0),
    )


def is_test_event(body: Any) -> bool:
    """S3 sends ``{"Event": "s3:TestEvent", ...}`` when a notification is configured."""
    return isinstance(body, dict) and body.get("Event") == "s3:TestEvent"


def parse_sqs_body(body: str) -> dict[str, Any]:
    """An SQS message body that should hold an S3 notification → the notification dict."""
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"SQS message body is not JSON ({exc}); expected an S3 event notification") from None
    if not isinstance(parsed, dict):
        raise ValueError("SQS message body is not a JSON object; expected an S3 event notification")
    return parsed
