"""``.csv`` inputs: numeric, comma-separated, one request per row, for single-input models.

* Each row holds the input's row flattened row-major: ``prod(shape[1:])`` cells (a
  ``[-1, 64]`` input takes 64 cells; ``[-1, 8, 8]`` also 64, reshaped to 8×8). One ``-1``
  among the non-batch dims is inferred from the first data row.
* An optional first line of column names is recognised when *none* of its cells is a
  number; a line mixing names and numbers is a bad data row, not a header. Blank lines are
  ignored (they are not requests); ``row`` in the output counts data rows from 0.
* Cells are numbers (``1``, ``-2.5``, ``1e-3``); integer inputs take integers, BOOL inputs
  take ``0``/``1``/``true``/``false``. NaN/Infinity are refused (the model would refuse
  them), naming the line and column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from layers.batch.chunking import fixed_batch
from layers.batch.errors import BatchInputError
from layers.batch.rows import Batch, single_input
from layers.codec import to_numpy_dtype
from layers.model import Model

_BOOLS = {"0": False, "1": True, "true": True, "false": False}


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


class CsvReader:
    def __init__(self, path: Path, model: Model) -> None:
        self.path, self.model = path, model
        self.spec = single_input(model, ".csv")
        self.want = to_numpy_dtype(self.spec.datatype)
        if self.spec.datatype == "BYTES":
            raise BatchInputError(
                f"input {self.spec.name!r} is BYTES (text); .csv carries numbers only. "
                "Send text inputs as a .jsonl of V2 requests."
            )
        dims = self.spec.shape[1:]
        if sum(d < 0 for d in dims) > 1:
            raise BatchInputError(
                f"input {self.spec.name!r} has shape {list(self.spec.shape)}: more than one dynamic "
                "dimension after the batch, so a flat csv row cannot be reshaped; use .npy or .npz."
            )
        self.known = math.prod(d for d in dims if d >= 0)
        self.columns: int | None = self.known if all(d >= 0 for d in dims) else None
        self.header: list[str] | None = None
        self.batch = fixed_batch(model.inputs)
        self.rows = self.requests = 0
        self.input_row_bytes = (self.columns or self.known) * self.want.itemsize

    # --- pass 1 ---------------------------------------------------------------------------

    def _lines(self) -> Iterator[tuple[int, list[str]]]:
        """(1-based line number, cells) of every non-blank line."""
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                for cells in reader:
                    if cells and any(c.strip() for c in cells):
                        yield reader.line_num, cells
        except UnicodeDecodeError as exc:
            raise BatchInputError(
                f"the .csv is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 csv."
            ) from None
        except csv.Error as exc:
            raise BatchInputError(f"the .csv cannot be parsed ({exc}); save it as plain comma-separated values.") from None

    def validate(self, chunk_rows: int) -> None:
        rows = 0
        self.header = None
        for index, (line_no, cells) in enumerate(self._lines()):
            if index == 0 and not any(_is_number(c) for c in cells):
                self.header = [c.strip() for c in cells]
                continue
            self._check_row(line_no, cells)
            rows += 1
        if self.header is not None and self.columns is not None and len(self.header) != self.columns:
            raise BatchInputError(
                f"the .csv header has {len(self.header)} column names but each row needs "
                f"{self.columns} values for input {self.spec.name!r}; fix the header line."
            )
        self.rows = self.requests = rows
        self.input_row_bytes = (self.columns or self.known) * self.want.itemsize

    def _check_row(self, line_no: int, cells: list[str]) -> None:
        if self.columns is None:
            if len(cells) % self.known:
                raise BatchInputError(
                    f"line {line_no} of the .csv has {len(cells)} values, which is not a multiple of "
                    f"{self.known} (input {self.spec.name!r} shape {list(self.spec.shape)}); fix that row."
                )
            self.columns = len(cells)
        if len(cells) != self.columns:
            raise BatchInputError(
                f"line {line_no} of the .csv has {len(cells)} values but input {self.spec.name!r} "
                f"(shape {list(self.spec.shape)}) needs {self.columns} per row; fix that row."
            )
        for col, cell in enumerate(cells, start=1):
            problem = self._cell_problem(cell.strip())
            if problem:
                name = f" ({self.header[col - 1]!r})" if self.header and col <= len(self.header) else ""
                raise BatchInputError(
                    f"line {line_no}, column {col}{name} of the .csv: {cell.strip()!r} {problem}."
                )

    def _cell_problem(self, cell: str) -> str | None:
        kind = self.want.kind
        if kind == "b":
            return None if cell.lower() in _BOOLS else "is not a BOOL; use 0/1 or true/false"
        if kind in "iu":
            try:
                value = int(cell)
            except ValueError:
                return f"is not an integer; input {self.spec.name!r} is {self.spec.datatype}"
            info = np.iinfo(self.want)
            if not info.min <= value <= info.max:
                return f"does not fit {self.spec.datatype} [{info.min}, {info.max}]"
            return None
        try:
            value = float(cell)
        except ValueError:
            return "is not a number; every cell must be numeric (only a first line of column names may be text)"
        if not math.isfinite(value):
            return "is not finite; replace NaN/Infinity with a number"
        if kind == "f" and abs(value) > np.finfo(self.want).max:
            return f"exceeds the {self.spec.datatype} range"
        return None

    # --- pass 2 ---------------------------------------------------------------------------

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        shape = self._row_shape()
        pending: list[list[str]] = []
        first = 0
        for i, (_, cells) in enumerate(self._data_rows()):
            pending.append(cells)
            if len(pending) == chunk_rows:
                yield self._batch(first, pending, shape)
                first = i + 1
                pending = []
        if pending:
            yield self._batch(first, pending, shape)

    def _data_rows(self) -> Iterator[tuple[int, list[str]]]:
        lines = self._lines()
        if self.header is not None:
            next(lines, None)
        return lines

    def _row_shape(self) -> tuple[int, ...]:
        dims = self.spec.shape[1:]
        inferred = (self.columns or self.known) // max(1, self.known)
        return tuple(d if d >= 0 else inferred for d in dims)

    def _batch(self, first: int, rows: list[list[str]], shape: tuple[int, ...]) -> Batch:
        if self.want.kind == "b":
            arr = np.array([[_BOOLS[c.strip().lower()] for c in r] for r in rows], dtype=bool)
        elif self.want.kind in "iu":
            arr = np.array([[int(c) for c in r] for r in rows], dtype=self.want)
        else:
            arr = np.array(rows, dtype=np.float64).astype(self.want)
        arr = arr.reshape((len(rows), *shape))
        pad = 0
        if self.batch is not None and len(rows) < self.batch:
            pad = self.batch - len(rows)
            arr = np.concatenate([arr, np.zeros((pad, *shape), arr.dtype)])
        return Batch(first_request=first, inputs={self.spec.name: arr}, pad=pad)

    def close(self) -> None:
        pass
