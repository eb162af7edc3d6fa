"""One input object → exactly one result (``out/<key>.jsonl``) or error record (``errors/<key>.json``).

Order of work, so that nothing is half-written and nothing is written twice:

1. Results already there for this object version (``x-amz-meta-modelfn-source``) → done.
2. Download the version named by the event to local temporary storage in 1 MiB pieces
   (a newer upload of the same key supersedes this event: skip; a deleted object: skip).
3. Open the reader for the extension and validate the whole file against the model's
   signature — no inference before every row is known to be good.
4. Run chunks sized from the batch dim and the memory budget, streaming the lines into a
   multipart upload of the final key; complete it only at the end, abort it on any failure.
5. Remove the other outcome's stale object of an earlier version, so exactly one remains.

A :class:`BatchInputError` anywhere becomes a final error record; any other exception
writes a provisional (``retryable``) record and propagates so the event is retried.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from layers import names
from layers.batch import upload
from layers.batch.chunking import fixed_batch, memory_budget_bytes, output_row_cost, rows_per_chunk
from layers.batch.deadline import Deadline, ObjectClock, OutOfTime
from layers.batch.encode import encode_batch
from layers.batch.errors import BatchInputError
from layers.batch.layout import BatchPaths, ObjectRef, suffix_of
from layers.batch.readers import open_reader
from layers.codec import to_numpy_dtype
from layers.dataplane import DataPlane
from layers.errors import BadRequest
from layers.model import Model

DOWNLOAD_PIECE = 1024 * 1024
DISK_HEADROOM = 16 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}


@dataclass
class JobResult:
    status: str  # "out" | "error" | "superseded" | "deleted" | "already-done"
    key: str | None = None
    requests: int = 0
    rows: int = 0
    seconds: float = 0.0
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class _Skip(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class BatchJob:
    """Runs objects through ``model`` (or its data plane, :class:`~layers.dataplane.DataPlane`);
    ``s3`` is a boto3 S3 client."""

    def __init__(self, model: Model | DataPlane, s3: Any, *, budget_bytes: int | None = None,
                 max_chunk_rows: int | None = None, tmp_dir: str | None = None,
                 part_size: int = upload.PART_SIZE) -> None:
        self.plane = model if isinstance(model, DataPlane) else DataPlane(model)
        self.s3 = s3
        self.budget_bytes = budget_bytes or memory_budget_bytes()
        self.max_chunk_rows = max_chunk_rows
        self.tmp_dir = tmp_dir or tempfile.gettempdir()
        self.part_size = part_size
        self.chunks_run = 0  # model calls made (the benchmark and tests read it)

    @property
    def model(self) -> Model:
        """The served model (the data plane's)."""
        return self.plane.model

    @model.setter
    def model(self, model: Model) -> None:
        self.plane = DataPlane(model, self.plane.hooks)

    def run(self, ref: ObjectRef, paths: BatchPaths, *, request_id: str, deadline: Deadline) -> JobResult:
        started = time.monotonic()
        existing = {key: self._head(ref.bucket, key) for key in (paths.out_key, paths.error_key)}
        if self._already_done(ref, paths, existing):
            return JobResult("already-done", key=None)
        clock = deadline.clock(ref.uri)
        try:
            result = self._produce(ref, paths, clock)
        except _Skip as skip:
            return JobResult(skip.status)
        except BatchInputError as exc:
            self._write_error(ref, paths, exc.reason, request_id, final=True, details=exc.details)
            self._delete_stale(ref, paths.out_key, existing[paths.out_key])
            return JobResult("error", key=paths.error_key, reason=exc.reason,
                             seconds=time.monotonic() - started)
        except OutOfTime:
            raise
        except Exception as exc:
            reason = (f"internal error while processing ({type(exc).__name__}); the event is retried "
                      "automatically and this record is replaced by the result. If it stays, the "
                      f"message reached the dead-letter queue: look up request id {request_id} in "
                      "the function's logs.")
            with contextlib.suppress(Exception):  # the original failure is what matters
                self._write_error(ref, paths, reason, request_id, final=False, details={})
            raise
        self._delete_stale(ref, paths.error_key, existing[paths.error_key])
        result.seconds = time.monotonic() - started
        return result

    # --- steps ------------------------------------------------------------------------------

    def _already_done(self, ref: ObjectRef, paths: BatchPaths, existing: dict) -> bool:
        out, err = existing[paths.out_key], existing[paths.error_key]
        if out and out.get(upload.META_SOURCE) == ref.identity:
            return True
        return bool(err and err.get(upload.META_SOURCE) == ref.identity and err.get(upload.META_FINAL) == "true")

    def _produce(self, ref: ObjectRef, paths: BatchPaths, clock: ObjectClock) -> JobResult:
        if paths.key_problem:
            raise BatchInputError(
                f"the key {paths.input_key!r} is not processed: {paths.key_problem}, which copied into "
                f"{paths.model}/{names.BATCH_OUT}/ would point outside this model's folder on a disk "
                "(aws s3 sync). Upload it again under a key without '.', '..' or empty segments.",
                key=paths.input_key)
        suffix = suffix_of(paths.relative)
        fd, name = tempfile.mkstemp(prefix="modelfn-batch-", suffix=suffix, dir=self.tmp_dir)
        os.close(fd)
        path = Path(name)
        try:
            self._download(ref, path, clock)
            reader = open_reader(path, suffix, self.model)
            try:
                reader.validate(self._chunk_rows(reader))
                if reader.rows == 0:
                    raise BatchInputError(
                        f"the object holds no rows ({ref.size:,} bytes); nothing was run. Upload a "
                        f"{suffix or 'file'} with at least one row (request).", size_bytes=ref.size)
                return self._infer_all(ref, paths, reader, clock)
            finally:
                reader.close()
        finally:
            path.unlink(missing_ok=True)

    def _download(self, ref: ObjectRef, path: Path, clock: ObjectClock) -> None:
        kwargs = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version_id:
            kwargs["VersionId"] = ref.version_id
        try:
            response = self.s3.get_object(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise _Skip("deleted") from None
            raise
        body = response["Body"]
        try:
            etag = response.get("ETag", "").strip('"')
            if not ref.version_id and ref.etag and etag != ref.etag:
                raise _Skip("superseded")
            size = int(response.get("ContentLength") or 0)
            free = shutil.disk_usage(self.tmp_dir).free
            if size > free - DISK_HEADROOM:
                raise BatchInputError(
                    f"the object is {size / 1e6:.0f} MB but the function has only {free / 1e6:.0f} MB of "
                    "temporary storage; split it into smaller files, or raise the function's "
                    "ephemeral storage (up to 10 GB).", size_bytes=size,
                )
            done = 0
            with open(path, "wb") as f:
                for piece in body.iter_chunks(DOWNLOAD_PIECE):
                    f.write(piece)
                    done += len(piece)
                    clock.check_download(done, size)
        finally:
            body.close()

    def _chunk_rows(self, reader) -> int:
        """Rows per model call for this file (its row size is known once the reader is open)."""
        try:
            batch = fixed_batch(self.model.inputs)
        except BadRequest as exc:
            raise BatchInputError(exc.message) from None
        return rows_per_chunk(
            input_row_bytes=reader.input_row_bytes,
            output_row_bytes=output_row_cost(self.model.outputs, lambda dt: to_numpy_dtype(dt).itemsize),
            budget_bytes=self.budget_bytes, batch=batch, max_rows=self.max_chunk_rows,
        )

    def _infer_all(self, ref: ObjectRef, paths: BatchPaths, reader, clock: ObjectClock) -> JobResult:
        chunk_rows = self._chunk_rows(reader)  # again: a csv knows its row width after validation
        metadata = self._metadata(ref, final=True)
        with upload.ResultUpload(self.s3, ref.bucket, paths.out_key, metadata, self.part_size) as out:
            clock.start_rows()
            done = 0
            for chunk in reader.batches(chunk_rows):
                clock.check_rows(done, reader.rows)
                rows = len(next(iter(chunk.inputs.values()))) - chunk.pad
                try:
                    results = self.plane.infer_arrays(chunk.inputs, chunk.output_names,
                                                      allow_nonfinite=chunk.allow_nonfinite)
                    out.write(encode_batch(chunk, results))
                except BadRequest as exc:
                    last = chunk.first_request + (len(chunk.sizes) if chunk.sizes else rows) - 1
                    raise BatchInputError(
                        f"requests {chunk.first_request}–{last} (0-based rows): {exc.message}"
                    ) from None
                self.chunks_run += 1
                done += rows
            out.complete()
        return JobResult("out", key=paths.out_key, requests=reader.requests, rows=reader.rows)

    # --- S3 helpers ---------------------------------------------------------------------------

    def _metadata(self, ref: ObjectRef, *, final: bool) -> dict[str, str]:
        return {upload.META_SOURCE: ref.identity, upload.META_FINAL: "true" if final else "false",
                "modelfn-model-version": self.model.version}

    def _write_error(self, ref: ObjectRef, paths: BatchPaths, reason: str, request_id: str, *,
                     final: bool, details: dict) -> None:
        record = {
            "reason": reason,
            "model": self.model.name,
            "version": self.model.version,
            "input": ref.uri,
            "input_version": ref.identity,
            "request_id": request_id,
            "retryable": not final,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            **details,
        }
        upload.put_error_record(self.s3, ref.bucket, paths.error_key, record, self._metadata(ref, final=final))

    def _head(self, bucket: str, key: str) -> dict[str, str] | None:
        try:
            return self.s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise

    def _delete_stale(self, ref: ObjectRef, key: str, existing: dict[str, str] | None) -> None:
        """The other outcome's object (an earlier version's, or our provisional error record)."""
        if existing is not None:
            self.s3.delete_object(Bucket=ref.bucket, Key=key)
