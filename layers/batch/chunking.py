"""How many rows go through the model at once: from its batch dim and a memory budget.

A chunk costs, per row: its input bytes twice (the read buffer and the copy handed to
onnxruntime), its output bytes, and the output's JSON text (~24 bytes per element). The
budget is ``MODELFN_BATCH_MEMORY_BUDGET_MB``, else a quarter of the function's memory
(``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``), else 64 MB. A model whose batch dim is fixed (``B``
instead of -1) runs exactly ``B`` rows per call, the last chunk zero-padded.
"""

from __future__ import annotations

import math
import os

from layers import names
from layers.errors import BadRequest
from layers.manifest import TensorSpec

DEFAULT_BUDGET_MB = 64
MAX_CHUNK_ROWS = 65_536
JSON_BYTES_PER_ELEMENT = 24
UNKNOWN_DIM = 64  # assumed size of an output dim the signature leaves dynamic


def memory_budget_bytes() -> int:
    raw = os.environ.get(names.ENV_BATCH_MEMORY_BUDGET_MB)
    if raw:
        try:
            mb = float(raw)
        except ValueError:
            raise ValueError(f"{names.ENV_BATCH_MEMORY_BUDGET_MB}={raw!r} is not a number of MB") from None
        if mb <= 0:
            raise ValueError(f"{names.ENV_BATCH_MEMORY_BUDGET_MB} must be positive, got {raw!r}")
        return int(mb * 1024 * 1024)
    function_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if function_mb and function_mb.isdigit():
        return max(16, int(function_mb) // 4) * 1024 * 1024
    return DEFAULT_BUDGET_MB * 1024 * 1024


def fixed_batch(inputs: tuple[TensorSpec, ...]) -> int | None:
    """The model's fixed batch size, or None when dim 0 is dynamic (-1) for every input."""
    fixed = {s.shape[0] for s in inputs if s.shape and s.shape[0] >= 0}
    if not fixed:
        return None
    if len(fixed) > 1 or any(not s.shape for s in inputs):
        raise BadRequest(
            f"the model's inputs disagree on the batch dimension ({[list(s.shape) for s in inputs]}); "
            "batch files need one leading row dimension shared by every input."
        )
    return fixed.pop()


def output_row_cost(outputs: tuple[TensorSpec, ...], itemsize_of) -> int:
    cost = 0
    for spec in outputs:
        elements = math.prod(d if d >= 0 else UNKNOWN_DIM for d in spec.shape[1:])
        cost += elements * (itemsize_of(spec.datatype) + JSON_BYTES_PER_ELEMENT)
    return cost


def rows_per_chunk(
    *, input_row_bytes: int, output_row_bytes: int, budget_bytes: int, batch: int | None,
    max_rows: int | None = None,
) -> int:
    """Rows per model call: ``batch`` when fixed, else what fits ``budget_bytes``."""
    if batch is not None:
        return batch
    per_row = max(1, 2 * input_row_bytes + output_row_bytes)
    rows = max(1, min(MAX_CHUNK_ROWS, budget_bytes // per_row))
    return min(rows, max_rows) if max_rows else rows
