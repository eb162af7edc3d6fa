"""Raw inputs for models with one BYTES input ``[-1]`` (an input kind's, or a plain string input).

Which files are raw inputs is the registered input kinds' and tasks' decision
(:mod:`layers.kinds`); the formats are read here:

* line files (the ``text`` kind's ``.txt``): one item per line (UTF-8); blank lines are not
  requests, ``row`` counts items.
* ``.csv`` (single BYTES-input models, kinds with ``batch_csv``): a header row naming the
  columns; the item is the column named like the input (``text``) or the only column; one
  request per data row.
* object files (the ``image`` kind's ``.png``/``.jpg``/``.jpeg``): the object is one item, one
  request (drop a folder of images under ``in/`` and each yields its own ``out/<key>.jsonl``).
* anything else a kind or task reads itself (:meth:`layers.kinds.InputKind.batch_reader`).

Each row is sent to the model as a one-element BYTES tensor row, through the same
:meth:`~layers.servable.Servable.infer` (so the same pre/post-processing) as the HTTP path.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from layers import kinds
from layers.batch.errors import BatchInputError
from layers.batch.rows import Batch, single_input
from layers.servable import Servable as Model

ROW_BYTES = 256  # memory per text row, for chunk sizing (token tensors are made per chunk)


def _objects(values: list) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def bytes_input(model: Model, fmt: str):
    spec = single_input(model, fmt)
    if spec.datatype != "BYTES" or list(spec.shape) != [-1]:
        raise BatchInputError(
            f"{fmt} files hold raw texts or images, but model {model.name!r} takes {spec.name!r} "
            f"{spec.datatype} {list(spec.shape)}; upload .npy/.npz/.csv tensors or a .jsonl of V2 requests."
        )
    return spec


def _kind_of(model: Model) -> kinds.InputKind | None:
    name = getattr(model, "kind", None)
    return kinds.input_kind(name) if name is not None else None


def _task_of(model: Model) -> kinds.Task | None:
    name = getattr(model, "task_name", None)
    return kinds.task(name) if name is not None else None


class _RowsReader:
    """Shared streaming of one text per row, ``chunk_rows`` at a time."""

    input_row_bytes = ROW_BYTES

    def __init__(self, path: Path, model: Model, fmt: str) -> None:
        self.path, self.model = path, model
        self.spec = bytes_input(model, fmt)
        kind = _kind_of(model)
        if kind is not None and not (fmt in kind.batch_line_suffixes or (fmt == ".csv" and kind.batch_csv)):
            raise BatchInputError(f"model {model.name!r} takes {kind.noun}s; {kind.batch_hint}.")
        self.rows = self.requests = 0

    def _texts(self) -> Iterator[str]:
        raise NotImplementedError

    def _checked(self) -> Iterator[str]:
        try:
            yield from self._texts()
        except UnicodeDecodeError as exc:
            raise BatchInputError(
                f"the file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8."
            ) from None

    def validate(self, chunk_rows: int) -> None:
        self.rows = self.requests = sum(1 for _ in self._checked())
        if not self.rows:
            raise BatchInputError("the file holds no texts; put one text per line (or per csv row).")

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        chunk: list[str] = []
        first = 0
        for text in self._checked():
            chunk.append(text)
            if len(chunk) == chunk_rows:
                yield Batch(first_request=first, inputs={self.spec.name: _objects(chunk)})
                first, chunk = first + len(chunk), []
        if chunk:
            yield Batch(first_request=first, inputs={self.spec.name: _objects(chunk)})

    def close(self) -> None:
        pass


class LinesReader(_RowsReader):
    """One item per line of a UTF-8 file."""

    def __init__(self, path: Path, model: Model, suffix: str) -> None:
        super().__init__(path, model, suffix)

    def _texts(self) -> Iterator[str]:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                text = line.rstrip("\r\n")
                if text.strip():
                    yield text


class CsvColumnReader(_RowsReader):
    def __init__(self, path: Path, model: Model) -> None:
        super().__init__(path, model, ".csv")

    def _texts(self) -> Iterator[str]:
        with open(self.path, encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None:
                return
            if self.spec.name in header:
                col = header.index(self.spec.name)
            elif len(header) == 1:
                col = 0
            else:
                raise BatchInputError(
                    f"the csv has columns {header}; name the text column {self.spec.name!r} (the "
                    "model's input) or upload a single-column csv with a header line."
                )
            for line_no, row in enumerate(rows, start=2):
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise BatchInputError(
                        f"line {line_no} of the csv has {len(row)} cells but the header has {len(header)}; "
                        "quote texts that contain commas."
                    )
                yield row[col]


class ObjectFileReader:
    """One object → one request (an image file, decoded by the model's input kind)."""

    def __init__(self, path: Path, model: Model, kind: kinds.InputKind) -> None:
        self.path, self.model = path, model
        self.spec = bytes_input(model, kind.name)
        if getattr(model, "kind", None) != kind.name:
            raise BatchInputError(
                f"model {model.name!r} does not take {kind.noun}s (its input {self.spec.name!r} is not "
                f"decoded as {kind.file_format}); upload .txt/.csv/.jsonl instead."
            )
        self.rows = self.requests = 0
        self.input_row_bytes = max(1, path.stat().st_size)

    def validate(self, chunk_rows: int) -> None:
        self.rows = self.requests = 1

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        yield Batch(first_request=0, inputs={self.spec.name: _objects([self.path.read_bytes()])})

    def close(self) -> None:
        pass


def open_raw_reader(path: Path, suffix: str, model: Model):
    """The raw-input reader for ``suffix``, or None when the file is not a raw input: the
    model's own kind and task first (their own readers), then any registered kind's formats."""
    own = [p for p in (_kind_of(model), _task_of(model)) if p is not None]
    for plugin in own:
        if (reader := plugin.batch_reader(path, suffix, model)) is not None:
            return reader
    registered = list(kinds.input_kinds().values())
    if any(suffix in k.batch_line_suffixes for k in registered):
        return LinesReader(path, model, suffix)
    if (kind := kinds.for_batch_file(suffix)) is not None:
        return ObjectFileReader(path, model, kind)
    if suffix == ".csv" and len(model.inputs) == 1 and model.inputs[0].datatype == "BYTES":
        return CsvColumnReader(path, model)
    return None
