"""Raw inputs for models that take text or images (a ``text``/``image`` BYTES input).

* ``.txt``: one text per line (UTF-8); blank lines are not requests, ``row`` counts texts.
* ``.csv`` (single BYTES-input models): a header row naming the columns; the text is the
  column named like the input (``text``) or the only column; one request per data row.
* ``.png``/``.jpg``/``.jpeg``: the object is one image, one request (drop a folder of
  images under ``in/`` and each yields its own ``out/<key>.jsonl``).

Each row is sent to the model as a one-element BYTES tensor row, through the same
:meth:`~layers.model.Model.infer` (so the same pre/post-processing) as the HTTP path.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from layers.batch.errors import BatchInputError
from layers.batch.readers import Batch, single_input
from layers.model import Model

TEXT_SUFFIXES = (".txt",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
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


class _RowsReader:
    """Shared streaming of one text per row, ``chunk_rows`` at a time."""

    input_row_bytes = ROW_BYTES

    def __init__(self, path: Path, model: Model, fmt: str) -> None:
        self.path, self.model = path, model
        self.spec = bytes_input(model, fmt)
        if getattr(model, "kind", None) == "image":
            raise BatchInputError(
                f"model {model.name!r} takes images; upload each PNG/JPEG as its own object under in/."
            )
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


class TextLinesReader(_RowsReader):
    def __init__(self, path: Path, model: Model) -> None:
        super().__init__(path, model, ".txt")

    def _texts(self) -> Iterator[str]:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                text = line.rstrip("\r\n")
                if text.strip():
                    yield text


class TextCsvReader(_RowsReader):
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


class ImageFileReader:
    """One PNG/JPEG object → one request (decoded by the model's pre-processing)."""

    def __init__(self, path: Path, model: Model) -> None:
        self.path, self.model = path, model
        self.spec = bytes_input(model, "image")
        if getattr(model, "kind", None) != "image":
            raise BatchInputError(
                f"model {model.name!r} does not take images (its input {self.spec.name!r} is not "
                "decoded as PNG/JPEG); upload .txt/.csv/.jsonl instead."
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
    """The raw-input reader for ``suffix``, or None when the file is not a raw input."""
    if suffix in TEXT_SUFFIXES:
        return TextLinesReader(path, model)
    if suffix in IMAGE_SUFFIXES:
        return ImageFileReader(path, model)
    if suffix == ".csv" and len(model.inputs) == 1 and model.inputs[0].datatype == "BYTES":
        return TextCsvReader(path, model)
    return None
