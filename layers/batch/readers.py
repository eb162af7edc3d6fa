"""Readers turn a downloaded input file into batches of model rows, by extension.

Every reader first :meth:`~Reader.validate`\\ s the whole file against the model's signature
(one streaming pass in chunks of ``chunk_rows``, nothing kept but counts) so a bad row is reported before any inference
and nothing is written; then :meth:`~Reader.batches` streams it again in chunks. Memory is
one chunk, never the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from layers.batch.errors import BatchInputError
from layers.batch.layout import TENSOR_SUFFIXES
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


def open_reader(path: Path, suffix: str, model: Model) -> Reader:
    """The reader for ``suffix``; an unsupported extension is a :class:`BatchInputError`."""
    from layers.batch.rawinputs import open_raw_reader  # .txt, images, text .csv

    raw = open_raw_reader(path, suffix, model)
    if raw is not None:
        return raw
    if suffix == ".npy":
        from layers.batch.arrays import NpyReader

        return NpyReader(path, model)
    if suffix == ".npz":
        from layers.batch.arrays import NpzReader

        return NpzReader(path, model)
    if suffix == ".csv":
        from layers.batch.csvfile import CsvReader

        return CsvReader(path, model)
    if suffix == ".jsonl":
        from layers.batch.jsonl import JsonlReader

        return JsonlReader(path, model)
    from layers.kinds import batch_suffixes

    raise BatchInputError(
        f"unsupported file extension {suffix or '(none)'!r}; upload one of "
        f"{', '.join((*TENSOR_SUFFIXES, *batch_suffixes()))} (see the README, 'Batch inference')."
    )


def single_input(model: Model, fmt: str):
    """The one input spec of a single-input model; .npy/.csv carry exactly one array."""
    if len(model.inputs) != 1:
        raise BatchInputError(
            f"{fmt} files hold one array but model {model.name!r} takes {len(model.inputs)} inputs "
            f"{[s.name for s in model.inputs]}; upload a .npz keyed by input name or a .jsonl of "
            "V2 requests instead."
        )
    return model.inputs[0]
