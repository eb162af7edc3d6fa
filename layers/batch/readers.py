"""Readers turn a downloaded input file into batches of model rows, by extension.

Every reader first :meth:`~Reader.validate`\\ s the whole file against the model's signature
(one streaming pass in chunks of ``chunk_rows``, nothing kept but counts) so a bad row is reported before any inference
and nothing is written; then :meth:`~Reader.batches` streams it again in chunks. Memory is
one chunk, never the file. The types they share are :mod:`layers.batch.rows`'s.
"""

from __future__ import annotations

from pathlib import Path

from layers.batch.errors import BatchInputError
from layers.batch.layout import TENSOR_SUFFIXES
from layers.batch.rows import Batch, Reader, single_input
from layers.servable import Servable as Model

__all__ = ["Batch", "Reader", "open_reader", "single_input"]


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
