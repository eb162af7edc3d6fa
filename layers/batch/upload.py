"""Writing results so that no partial ``out/`` object can ever be seen.

:class:`ResultUpload` streams lines into a multipart upload of the *final* key and
completes it only at the very end; on any failure it is aborted. An incomplete multipart
upload is invisible to readers (and the bucket's ``AbortIncompleteMultipartUpload``
lifecycle rule removes the parts of an invocation that was killed). Results smaller than
one part skip multipart and are written by one ``PutObject``, which is atomic too.

Every object we write carries ``x-amz-meta-modelfn-source`` (the input's version id or ETag)
so a redelivered event finds the finished result even after its idempotency record expired.
"""

from __future__ import annotations

import io
import json
from typing import Any

PART_SIZE = 8 * 1024 * 1024  # S3 needs >= 5 MiB for every part but the last
META_SOURCE = "modelfn-source"
META_FINAL = "modelfn-final"


class ResultUpload:
    """Lines → one S3 object at ``key``, visible only after :meth:`complete`."""

    def __init__(self, s3: Any, bucket: str, key: str, metadata: dict[str, str], part_size: int = PART_SIZE):
        self.s3, self.bucket, self.key, self.metadata = s3, bucket, key, metadata
        self.part_size = part_size
        self.buffer = io.BytesIO()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        self.buffer.write(data)
        self.bytes_written += len(data)
        if self.buffer.tell() >= self.part_size:
            self._flush_part()

    def _flush_part(self) -> None:
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="application/x-ndjson", Metadata=self.metadata,
            )["UploadId"]
        number = len(self.parts) + 1
        body = self.buffer.getvalue()
        self.buffer = io.BytesIO()
        etag = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body,
        )["ETag"]
        self.parts.append({"ETag": etag, "PartNumber": number})

    def complete(self) -> None:
        if self.upload_id is None:
            self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=self.buffer.getvalue(),
                               ContentType="application/x-ndjson", Metadata=self.metadata)
            return
        if self.buffer.tell():
            self._flush_part()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts},
        )
        self.upload_id = None

    def abort(self) -> None:
        self.buffer = io.BytesIO()
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)

    def __enter__(self) -> ResultUpload:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def put_error_record(s3: Any, bucket: str, key: str, record: dict[str, Any], metadata: dict[str, str]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record, indent=2).encode() + b"\n",
                  ContentType="application/json", Metadata=metadata)
