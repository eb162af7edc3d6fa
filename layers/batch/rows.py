"""What every batch reader yields and implements: :class:`Batch` (rows for one model call),
the :class:`Reader` protocol, and :func:`single_input`. The format readers (arrays, csv,
jsonl, raw inputs) import these; :mod:`layers.batch.readers` picks a reader by extension,
so nothing imports back up to the dispatcher.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from layers.batch.errors import BatchInputError
from layers.servable import Servable as Model


@dataclass
class Batch:
    """Rows for one model call. ``sizes``: rows per request (None = one row per request)."""

    first_request: int
    inputs: dict[str, np.ndarray]
    sizes: list[int] | None = None
    output_names: list[str] | None = None
    allow_nonfinite: bool = False
    pad: int = 0  # zero rows appended to fill a fixed batch; their outputs are dropped
    ids: list[str | None] = field(default_factory=list)


class Reader(Protocol):
    requests: int  # output lines (known after validate)
    rows: int  # model rows (known after validate)
    input_row_bytes: int

    def validate(self, chunk_rows: int) -> None: ...

    def batches(self, chunk_rows: int) -> Iterator[Batch]: ...

    def close(self) -> None: ...


def single_input(model: Model, fmt: str):
    """The one input spec of a single-input model; .npy/.csv carry exactly one array."""
    if len(model.inputs) != 1:
        raise BatchInputError(
            f"{fmt} files hold one array but model {model.name!r} takes {len(model.inputs)} inputs "
            f"{[s.name for s in model.inputs]}; upload a .npz keyed by input name or a .jsonl of "
            "V2 requests instead."
        )
    return model.inputs[0]
