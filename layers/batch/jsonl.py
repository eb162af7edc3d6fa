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

Lines are read in blocks. Within a block, consecutive lines of the plain shape ``{"id"?,
"inputs": [numeric tensors]}`` whose names, shapes and datatypes (their *signature*) equal
those of a line the full parser already accepted are decoded together: one ``numpy`` array per
input for the whole run of lines, checked once (datatype, range, NaN), each line a view of it.
That is what makes a ``.jsonl`` cost about what a ``.csv`` of the same rows does. Anything else,
or any run whose joint checks fail, goes through the full parser line by line, so every error
is the same message for the same (first) bad line as before.
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
from layers.codec import numeric_from_json, to_numpy_dtype
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


#: Lines decoded per block by the joint fast path (bounded memory: one block of parsed JSON).
BLOCK_LINES = 2048
_PLAIN_REQUEST_KEYS = frozenset(("inputs",)), frozenset(("inputs", "id"))
_PLAIN_TENSOR_KEYS = frozenset(("name", "shape", "datatype", "data"))


def _signature(request: Any) -> tuple | None:
    """(name, shape, datatype) of each input of a plain numeric request, else None."""
    if type(request) is not dict or request.keys() not in _PLAIN_REQUEST_KEYS:
        return None
    inputs, request_id = request.get("inputs"), request.get("id")
    if type(inputs) is not list or not inputs or not (request_id is None or type(request_id) is str):
        return None
    sig = []
    for t in inputs:
        if type(t) is not dict or t.keys() != _PLAIN_TENSOR_KEYS or type(t["data"]) is not list:
            return None
        shape, datatype = t["shape"], t["datatype"]
        if type(shape) is not list or not all(type(d) is int for d in shape) or datatype in (None, "BYTES"):
            return None
        sig.append((t["name"], tuple(shape), datatype))
    return tuple(sig)


class JsonlReader:
    def __init__(self, path: Path, model: Model) -> None:
        self.path, self.model = path, model
        self.specs = {s.name: s for s in model.inputs}
        self.batch = fixed_batch(model.inputs)
        self.rows = self.requests = 0
        self._parsed: list[_Request] | None = None  # every request, when they fit one chunk
        self._accepted: set[tuple] = set()  # signatures the full parser accepted
        self.input_row_bytes = sum(
            math.prod(d if d >= 0 else 1 for d in s.shape[1:]) * to_numpy_dtype(s.datatype).itemsize
            for s in model.inputs
        )

    def _requests(self) -> Iterator[tuple[int, _Request]]:
        try:
            with open(self.path, encoding="utf-8") as f:
                block: list[tuple[int, str]] = []
                for line_no, line in enumerate(f, start=1):
                    if line.strip():
                        block.append((line_no, line))
                        if len(block) == BLOCK_LINES:
                            yield from self._block(block)
                            block = []
                yield from self._block(block)
        except UnicodeDecodeError as exc:
            raise BatchInputError(
                f"the .jsonl is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8."
            ) from None

    def _block(self, block: list[tuple[int, str]]) -> Iterator[tuple[int, _Request]]:
        """The block's requests in order: runs of known signatures decoded jointly, the rest
        (and any run the joint checks refuse) by the full parser, line by line."""
        try:
            parsed = [jsonfast.loads(line) for _, line in block]
        except ValueError:
            parsed = None
        i = 0
        while i < len(block):
            sig = _signature(parsed[i]) if parsed is not None else None
            if sig is None or sig not in self._accepted:
                line_no, line = block[i]
                req = self._decode(line_no, line)
                if sig is not None:
                    self._accepted.add(sig)
                yield line_no, req
                i += 1
                continue
            j = i + 1
            while j < len(block) and _signature(parsed[j]) == sig:
                j += 1
            joint = self._joint(sig, parsed[i:j])
            if joint is None:  # a bad line in the run: the full parser finds it and says why
                joint = [self._decode(n, line) for n, line in block[i:j]]
            yield from zip((n for n, _ in block[i:j]), joint, strict=True)
            i = j

    def _joint(self, sig: tuple, requests: list[dict]) -> list[_Request] | None:
        """Requests of one accepted signature decoded together, or None if any check fails."""
        n, columns = len(requests), {}
        for k, (name, shape, datatype) in enumerate(sig):
            spec = self.specs[name]
            try:
                arr = numeric_from_json(name, [r["inputs"][k]["data"] for r in requests], datatype,
                                        to_numpy_dtype(datatype))
                want = math.prod(shape)
                if arr.shape != (n, want) and not (want == 0 and arr.size == 0):
                    return None
                columns[name] = self.model.check_value(spec, arr.reshape((n, *shape)))
            except (BadRequest, ValueError, TypeError, OverflowError):
                return None
        rows = sig[0][1][0] if sig[0][1] else 1
        return [_Request({name: col[i] for name, col in columns.items()}, None, False, r.get("id"), rows)
                for i, r in enumerate(requests)]

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
