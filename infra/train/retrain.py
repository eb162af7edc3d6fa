"""Local retraining: objects landing under ``s3://modelfn-batch/<model>/train/`` retrain it.

The deployed stack turns S3 object-created events under the prefix into one Step Functions
execution (EventBridge rule); locally moto delivers the same events to a queue
(``modelfn-<model>-train``, :meth:`infra.local.s3.LocalAws.create_resources`) and
:class:`Retrainer` consumes it. Bursts are debounced: once an event arrives it keeps
collecting until the queue has been quiet for ``debounce_s`` (at most ``max_wait_s``), so a
hundred files make one run. Events arriving during a run make exactly one more run after it.

A run mirrors the whole ``<model>/train/`` prefix into ``<out>/training-data/<model>/``
(SageMaker's ``S3Prefix`` channel semantics: the channel is the prefix, not the new object),
then :func:`infra.train.lifecycle.train_and_promote`; a promotion is hot-swapped by the
local stack like any other.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layers import names

log = logging.getLogger("modelfn.local.retrain")


def changed_keys(messages: list[dict]) -> set[str]:
    """The object keys an S3→SQS notification batch names (test events name none)."""
    keys = set()
    for m in messages:
        try:
            body = json.loads(m["Body"])
        except (KeyError, ValueError):
            continue
        for record in body.get("Records") or []:
            key = ((record.get("s3") or {}).get("object") or {}).get("key")
            if key:
                keys.add(key)
    return keys


def mirror_prefix(s3, bucket: str, prefix: str, dest: Path) -> int:
    """Make ``dest`` hold exactly the objects under ``prefix``; return how many there are."""
    from urllib.parse import unquote_plus

    dest.mkdir(parents=True, exist_ok=True)
    wanted: dict[Path, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = unquote_plus(obj["Key"])[len(prefix):]
            if not rel or rel.endswith("/") or ".." in Path(rel).parts:
                continue
            local = dest / rel
            wanted[local] = obj["Size"]
            if not local.is_file() or local.stat().st_size != obj["Size"]:
                local.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(local))
    for f in [p for p in dest.rglob("*") if p.is_file()]:
        if f not in wanted:
            f.unlink()
    return len(wanted)


@dataclass
class Retrainer:
    """One model's retraining loop in the local stack."""

    model: str
    queue_url: str
    aws: Any  # infra.local.s3.LocalAws
    catalog_path: Path
    out_dir: Path
    debounce_s: float = 2.0
    max_wait_s: float = 30.0
    outcomes: list[Any] = field(default_factory=list)  # TrainOutcome or the exception, per run
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def data_dir(self) -> Path:
        return self.out_dir / "training-data" / self.model

    def start(self) -> Retrainer:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"retrain-{self.model}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _receive(self, sqs, wait_s: int) -> list[dict]:
        try:
            return sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=wait_s).get("Messages", [])
        except Exception as exc:  # the server is stopping, or a transient error
            if not self._stop.is_set():
                log.warning("%s: retraining queue receive failed: %s", self.model, exc)
                self._stop.wait(1)
            return []

    def _run(self) -> None:
        sqs = self.aws.client("sqs")
        while not self._stop.is_set():
            pending = self._receive(sqs, 1)
            if not pending:
                continue
            first = last = time.monotonic()
            while not self._stop.is_set() and time.monotonic() - last < self.debounce_s \
                    and time.monotonic() - first < self.max_wait_s:
                more = self._receive(sqs, 1)
                if more:
                    pending += more
                    last = time.monotonic()
            for i in range(0, len(pending), 10):
                sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(pending[i:i + 10])])
            keys = changed_keys(pending)
            if keys and not self._stop.is_set():
                self._train(len(keys))

    def _train(self, new_objects: int) -> None:
        from infra.catalog import load_catalog
        from infra.train.lifecycle import train_and_promote

        prefix = f"{self.model}/{names.TRAIN_PREFIX}/"
        try:
            count = mirror_prefix(self.aws.client("s3"), self.aws.bucket, prefix, self.data_dir)
            log.info("%s: retraining on %d object(s) under s3://%s/%s (%d new)", self.model, count,
                     self.aws.bucket, prefix, new_objects)
            outcome = train_and_promote(load_catalog(self.catalog_path), self.model, self.out_dir,
                                        data=self.data_dir)
        except Exception as exc:  # reported, never fatal to the stack
            log.warning("%s: retraining failed: %s", self.model, exc)
            self.outcomes.append(exc)
            return
        self.outcomes.append(outcome)
        log.info("%s: retrained v%d %s: %s", self.model, outcome.number, outcome.version,
                 ("promoted, " if outcome.promoted else "not promoted, ") + outcome.reason)
