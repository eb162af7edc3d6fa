"""``.jsonl`` inputs: each non-blank line is one V2 inference request.

A line is what ``POST /v2/models/<name>/infer`` takes as JSON:
``{"id"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?: [{"name"}],
"parameters"?: {"allow_nonfinite"?: bool}}``, parsed and validated by the HTTP path's own
parser (:func:`layers.v2_wire.parse_request`): a line the API would answer 400 sends the
object to ``errors/`` with the API's message, after the line number. Binary tensor data cannot
travel in a text line and is refused, as is the ``classification`` output extension (also
refused over HTTP); outputs are always written as JSON ``data``. Output line ``i`` answers request (line) ``i``;
consecutive requests with the same outputs and row shapes are stacked into one model call
when the model's batch dim is dynamic.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from layers import jsonfast
from layers.batch.chunking import fixed_batch
from layers.batch.errors import BatchInputError
from layers.batch.rows import Batch
from layers.codec import to_numpy_dtype
from layers.errors import BadRequest
from layers.model import Model
from layers.v2_wire import parse_request


class _Request:
    __slots__ = ("allow_nonfinite", "arrays", "id", "outputs", "rows")

    def __init__(self, arrays, outputs, allow_nonfinite, request_id, rows):
        self.arrays, self.outputs = arrays, outputs
        self.allow_nonfinite, self.id, self.rows = allow_nonfinite, request_id, rows

    def group_key(self) -> tuple:
        shapes = tuple((k, v.shape[1:]) for k, v in self.arrays.items())
        return (tuple(self.outputs) if self.outputs is not None else None, shapes, self.allow_nonfinite)


class JsonlReader:
    def __init__(self, path: Path, model: Model) -> None:
        self.path, self.model = path, model
        self.specs = {s.name: s for s in model.inputs}
        self.batch = fixed_batch(model.inputs)
        self.rows = self.requests = 0
        self._parsed: list[_Request] | None = None  # every request, when they fit one chunk
        self.input_row_bytes = sum(
            math.prod(d if d >= 0 else 1 for d in s.shape[1:]) * to_numpy_dtype(s.datatype).itemsize
            for s in model.inputs
        )

    def _requests(self) -> Iterator[tuple[int, _Request]]:
        try:
            with open(self.path, encoding="utf-8") as f:
                for line_no, line in enumerate(f, start=1):
                    if line.strip():
                        yield line_no, self._decode(line_no, line)
        except UnicodeDecodeError as exc:
            raise BatchInputError(
                f"the .jsonl is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8."
            ) from None

    def _decode(self, line_no: int, line: str) -> _Request:
        where = f"line {line_no} of the .jsonl"
        try:
            request = jsonfast.loads(line)
        except ValueError as exc:
            raise BatchInputError(
                f"{where} is not valid JSON ({exc}); each line must be one V2 request object, e.g. "
                '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}.'
            ) from None
        try:
            return self._parse(request)
        except BadRequest as exc:
            raise BatchInputError(f"{where}: {exc.message}") from None

    def _parse(self, request: Any) -> _Request:
        """The HTTP path's own parser (:func:`layers.v2_wire.parse_request`: it decodes and
        validates every input); only binary tensor data, which a text line cannot carry, is
        refused before it, with the fix."""
        for t in (request.get("inputs") if isinstance(request, dict) else None) or []:
            params = t.get("parameters") if isinstance(t, dict) else None
            if isinstance(params, dict) and params.get("binary_data_size") is not None:
                raise BadRequest(f"input {t.get('name')!r} uses binary_data_size; in .jsonl send \"data\" "
                                 "as a JSON list.")
        req = parse_request(self.model, request)
        names = self.model.validate_output_names(req.outputs) if req.outputs is not None else None
        rows = {int(a.shape[0]) if a.ndim else 1 for a in req.arrays.values()}
        if len(rows) != 1:
            raise BadRequest("the inputs of one request must have the same number of rows (dimension 0).")
        return _Request(req.arrays, names, req.allow_nonfinite, req.id, rows.pop())

    def validate(self, chunk_rows: int) -> None:
        """Parse every line; while the rows parsed so far fit one chunk they are kept, so a
        file no larger than a chunk is not parsed a second time by :meth:`batches`."""
        requests = rows = 0
        kept: list[_Request] | None = []
        for _, req in self._requests():
            requests += 1
            rows += req.rows
            if kept is not None:
                if rows <= chunk_rows:
                    kept.append(req)
                else:
                    kept = None
        self.requests, self.rows = requests, rows
        self._parsed = kept

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        parsed, self._parsed = self._parsed, None
        requests = iter(parsed) if parsed is not None else (req for _, req in self._requests())
        group: list[_Request] = []
        first = index = group_rows = 0
        key: tuple | None = None
        for index, req in enumerate(requests):
            req_key = req.group_key()
            stackable = self.batch is None and group and key == req_key
            if group and (not stackable or group_rows + req.rows > chunk_rows):
                yield self._batch(first, group)
                group, first, group_rows = [], index, 0
            if not group:
                key = req_key
            group.append(req)
            group_rows += req.rows
        if group:
            yield self._batch(first, group)

    @staticmethod
    def _batch(first: int, group: list[_Request]) -> Batch:
        head = group[0]
        if len(group) == 1:
            inputs = head.arrays
        else:
            inputs = {k: np.concatenate([r.arrays[k] for r in group]) for k in head.arrays}
        return Batch(
            first_request=first, inputs=inputs, sizes=[r.rows for r in group],
            output_names=head.outputs, allow_nonfinite=head.allow_nonfinite, ids=[r.id for r in group],
        )

    def close(self) -> None:
        pass
