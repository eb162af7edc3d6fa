"""``.npy`` and ``.npz`` inputs, read as streams of rows (never loaded whole).

``.npy``: the single input's array; row ``i`` (``arr[i]``) is request ``i``.
``.npz``: one array per input, keyed by input name (``np.savez(f, x=..., mask=...)``); row
``i`` of every array forms request ``i``. Stored (``np.savez``) and deflated
(``np.savez_compressed``) members both stream through :mod:`zipfile`, one chunk at a time.

Why sequential reads rather than ``np.load(mmap_mode="r")``: pages of a mapped file count
in the process's RSS once touched (and so against the function's memory limit) until the
kernel evicts them, so a memory-mapped 5 GB file can look like 5 GB of memory. Reading a
chunk into a fresh buffer keeps RSS at one chunk whatever the file size.

Arrays may be any dtype that casts to the model's within its kind (float64 → FP32,
int64 → INT32, values checked to fit); other dtypes, object arrays and Fortran order are
refused with the fix.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npformat

from layers.batch.chunking import fixed_batch
from layers.batch.errors import BatchInputError
from layers.batch.rows import Batch, single_input
from layers.codec import to_numpy_dtype
from layers.manifest import TensorSpec
from layers.model import Model


class ArrayStream:
    """One ``.npy`` payload: its header, then rows read sequentially from ``fileobj``."""

    def __init__(self, fileobj: BinaryIO, spec: TensorSpec, where: str) -> None:
        self.fileobj, self.spec, self.where = fileobj, spec, where
        try:
            version = npformat.read_magic(fileobj)
            read_header = {(1, 0): npformat.read_array_header_1_0,
                           (2, 0): npformat.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"npy format version {version} is not supported")
            shape, fortran, dtype = read_header(fileobj)
        except (ValueError, OSError, EOFError) as exc:
            raise BatchInputError(
                f"{where} is not a readable .npy array ({exc}); write it with numpy.save / numpy.savez."
            ) from None
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.want = to_numpy_dtype(spec.datatype)
        self._check(fortran)
        self.row_shape = self.shape[1:]
        self.row_bytes = math.prod(self.row_shape) * self.dtype.itemsize
        self.rows = self.shape[0]

    def _check(self, fortran: bool) -> None:
        name, spec = self.spec.name, self.spec
        if self.dtype.hasobject or self.dtype.kind in "OUSV":
            raise BatchInputError(
                f"{self.where} holds {self.dtype} values; input {name!r} needs {spec.datatype} "
                f"numbers. Save a numeric array (e.g. arr.astype(np.{self.want.name}))."
            )
        if self.dtype != self.want and not np.can_cast(self.dtype, self.want, casting="same_kind"):
            raise BatchInputError(
                f"{self.where} has dtype {self.dtype} but input {name!r} is {spec.datatype}; "
                f"convert it with arr.astype(np.{self.want.name}) before saving."
            )
        if fortran and len(self.shape) > 1:
            raise BatchInputError(
                f"{self.where} is stored in Fortran order; save np.ascontiguousarray(arr) instead."
            )
        if len(self.shape) != len(spec.shape):
            example = ", ".join(["rows"] + [str(d) if d >= 0 else "n" for d in spec.shape[1:]])
            raise BatchInputError(
                f"{self.where} has shape {list(self.shape)} but input {name!r} needs rank "
                f"{len(spec.shape)}, ({example}): one row per request (model shape "
                f"{list(spec.shape)}, -1 = any size); reshape the array before saving it."
            )
        for i, (got, want) in enumerate(zip(self.shape[1:], spec.shape[1:], strict=True), start=1):
            if want >= 0 and got != want:
                raise BatchInputError(
                    f"{self.where} has shape {list(self.shape)} but dimension {i} of input {name!r} "
                    f"must be {want} (model shape {list(spec.shape)}); fix the array's shape."
                )

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` rows as a native array of the file's dtype."""
        want = n * self.row_bytes
        try:
            raw = self.fileobj.read(want)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise BatchInputError(
                f"{self.where} is corrupt ({exc}); write it again with numpy.savez and re-upload."
            ) from None
        if len(raw) != want:
            raise BatchInputError(
                f"{self.where} ends early: its header says {self.rows} rows but the data stops "
                "before that; the file is truncated, upload it again."
            )
        arr = np.frombuffer(raw, dtype=self.dtype).reshape((n, *self.row_shape))
        return arr if self.dtype.isnative else arr.astype(self.dtype.newbyteorder("="))

    def to_model(self, arr: np.ndarray) -> np.ndarray:
        return arr if arr.dtype == self.want else arr.astype(self.want)

    def scan(self, arr: np.ndarray, first_row: int) -> None:
        """Values the model would reject, reported by row (checked before any inference)."""
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = first_row + int(np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)))[0][0])
            raise BatchInputError(
                f"{self.where}: row {bad} of input {self.spec.name!r} contains NaN or Infinity; "
                "replace non-finite values (e.g. np.nan_to_num) or send that row as a .jsonl request "
                "with \"parameters\": {\"allow_nonfinite\": true}."
            )
        if self.want.kind in "iu" and arr.dtype != self.want and arr.size:
            info = np.iinfo(self.want)
            flat = arr.reshape(len(arr), -1)
            out = (flat < info.min) | (flat > info.max)
            if out.any():
                bad = first_row + int(np.argwhere(out)[0][0])
                raise BatchInputError(
                    f"{self.where}: row {bad} of input {self.spec.name!r} has values outside "
                    f"{self.spec.datatype} [{info.min}, {info.max}]; fix the data or its dtype."
                )


class _ArrayReader:
    """Rows of one or more :class:`ArrayStream` read in lockstep."""

    streams: dict[str, ArrayStream]

    def _init_counts(self, model: Model) -> None:
        rows = {name: s.rows for name, s in self.streams.items()}
        if len(set(rows.values())) > 1:
            raise BatchInputError(
                f"the arrays have different row counts {rows}; row i of every input forms request i, "
                "so every array needs the same number of rows."
            )
        self.rows = self.requests = next(iter(rows.values()))
        self.batch = fixed_batch(model.inputs)
        self.input_row_bytes = sum(math.prod(s.row_shape) * s.want.itemsize for s in self.streams.values())

    def validate(self, chunk_rows: int) -> None:
        step = max(1, chunk_rows)
        for first in range(0, self.rows, step):
            n = min(step, self.rows - first)
            for s in self.streams.values():
                s.scan(s.read(n), first)
        self._rewind()

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        for first in range(0, self.rows, chunk_rows):
            n = min(chunk_rows, self.rows - first)
            inputs = {name: s.to_model(s.read(n)) for name, s in self.streams.items()}
            pad = 0
            if self.batch is not None and n < self.batch:
                pad = self.batch - n
                inputs = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)])
                          for k, v in inputs.items()}
            yield Batch(first_request=first, inputs=inputs, pad=pad)

    def _rewind(self) -> None:
        raise NotImplementedError


class NpyReader(_ArrayReader):
    def __init__(self, path: Path, model: Model) -> None:
        spec = single_input(model, ".npy")
        self._file = open(path, "rb")  # noqa: SIM115 — closed by close()
        try:
            self.streams = {spec.name: ArrayStream(self._file, spec, "the .npy array")}
            self._data_offset = self._file.tell()
            self._init_counts(model)
        except BaseException:
            self._file.close()
            raise

    def _rewind(self) -> None:
        self._file.seek(self._data_offset)

    def close(self) -> None:
        self._file.close()


class NpzReader(_ArrayReader):
    def __init__(self, path: Path, model: Model) -> None:
        self.model = model
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BatchInputError(
                f"the .npz file is not a readable zip archive ({exc}); write it with numpy.savez "
                "or numpy.savez_compressed."
            ) from None
        try:
            self._members = self._check_members()
            self._open()
            self._init_counts(model)
        except BaseException:
            self.close()
            raise

    def _check_members(self) -> dict[str, str]:
        members = {}
        for info in self._zip.infolist():
            key = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy"):
                raise BatchInputError(
                    f"the .npz holds {info.filename!r}, which is not a .npy array; keep only arrays "
                    "written by numpy.savez(file, <input name>=array, ...)."
                )
            members[key] = info.filename
        expected = [s.name for s in self.model.inputs]
        unknown = sorted(set(members) - set(expected))
        missing = [n for n in expected if n not in members]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing array(s) {missing}")
            if unknown:
                parts.append(f"unknown array(s) {unknown}")
            raise BatchInputError(
                f"the .npz has {' and '.join(parts)}: model {self.model.name!r} takes inputs "
                f"{expected}; save one array per input, keyed by its name "
                f"(numpy.savez(f, {', '.join(f'{n}=...' for n in expected)}))."
            )
        return members

    def _open(self) -> None:
        self.streams = {}
        for spec in self.model.inputs:
            member = self._members[spec.name]
            try:
                handle = self._zip.open(member)
            except (zipfile.BadZipFile, NotImplementedError, OSError) as exc:
                raise BatchInputError(f"array {member!r} of the .npz cannot be read ({exc}).") from None
            self.streams[spec.name] = ArrayStream(handle, spec, f"array {spec.name!r} of the .npz")

    def _rewind(self) -> None:
        for s in self.streams.values():
            s.fileobj.close()
        self._open()

    def close(self) -> None:
        for s in getattr(self, "streams", {}).values():
            s.fileobj.close()
        self._zip.close()
