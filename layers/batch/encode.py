"""Model outputs → output lines ``{"row": i, "outputs": [<V2 tensors>]}``, one per request.

Tensors are encoded by :func:`layers.codec.encode_tensor` (the HTTP path's codec), once per
chunk. For one-row requests (.npy/.npz/.csv) each row's tensor has shape ``[1, ...]``, as
the HTTP response to that row alone would; its numbers are serialised for the whole chunk
in one JSON dump and split per row, so encoding costs well under a microsecond per
row instead of a dump per line (that is most of the vectorised speed-up measured
in ``bench/bench_batch.py``). BYTES outputs, whose strings could contain the split marker,
take the per-row path.
"""

from __future__ import annotations

import math

import numpy as np

from layers import jsonfast
from layers.batch.rows import Batch
from layers.codec import encode_tensor


def encode_batch(batch: Batch, results: dict[str, np.ndarray]) -> bytes:
    """The output lines for ``batch`` (newline-terminated UTF-8)."""
    if batch.sizes is None:
        return _encode_rows(batch, results)
    return _encode_requests(batch, results)


def _encode_rows(batch: Batch, results: dict[str, np.ndarray]) -> bytes:
    n = len(next(iter(batch.inputs.values()))) - batch.pad
    if n <= 0:
        return b""
    per_output = []
    for name, arr in results.items():
        arr = arr[:n]
        head = encode_tensor(name, arr[:0])  # the codec's datatype for this tensor (no data)
        prefix = jsonfast.dumps({"name": name, "shape": [1, *arr.shape[1:]], "datatype": head["datatype"]})
        per_output.append((prefix[:-1] + ',"data":[', _row_data(name, arr, n)))
    first = batch.first_request
    if len(per_output) == 1:
        ((prefix, data),) = per_output
        return "".join([f'{{"row": {first + i}, "outputs": [{prefix}{d}]}}]}}\n'
                        for i, d in enumerate(data)]).encode()
    lines = []
    for i in range(n):
        tensors = ", ".join(f"{prefix}{data[i]}]}}" for prefix, data in per_output)
        lines.append(f'{{"row": {first + i}, "outputs": [{tensors}]}}\n')
    return "".join(lines).encode()


def _row_data(name: str, arr: np.ndarray, n: int) -> list[str]:
    """Row ``i``'s flat values as JSON list *contents* (without the brackets)."""
    k = math.prod(arr.shape[1:])
    if arr.dtype.kind in "biuf" and k > 0:
        # numbers only, so "],[" separates the rows of one dump; tolist() gives exactly the
        # Python values encode_tensor's data would hold
        return jsonfast.dumps(arr.reshape(n, k).tolist())[2:-2].split("],[")
    data = encode_tensor(name, arr)["data"]  # BYTES: the codec's str conversion and checks
    return [jsonfast.dumps(data[i * k:(i + 1) * k])[1:-1] for i in range(n)]


def _encode_requests(batch: Batch, results: dict[str, np.ndarray]) -> bytes:
    lines, offset = [], 0
    for j, size in enumerate(batch.sizes or ()):
        line: dict = {"row": batch.first_request + j}
        if batch.ids and batch.ids[j] is not None:
            line["id"] = batch.ids[j]
        line["outputs"] = [encode_tensor(name, arr[offset:offset + size]) for name, arr in results.items()]
        lines.append(jsonfast.dumps(line) + "\n")
        offset += size
    return "".join(lines).encode()
