"""Example, calibration and validation sets: ``.npz`` files keyed by input name.

A single-input model takes its one array under any key; ``labels`` (validation only) holds
the expected class per row for the accuracy figure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABELS_KEY = "labels"


class DataError(ValueError):
    """A data file does not match the model's inputs; the message says how to fix it."""


@dataclass(frozen=True)
class Dataset:
    """Input arrays keyed by the model's input names (same row count), plus optional labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {k: v[start:stop] for k, v in self.inputs.items()}

    def batches(self, size: int) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, self.rows, size):
            yield self.batch(start, start + size)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` in file order (no pickles: data files must not run code)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz of arrays ({exc}); write it with "
                        "numpy.savez") from exc


def load_dataset(path: Path, input_names: Sequence[str], input_dtypes: dict[str, np.dtype],
                 *, key: str) -> Dataset:
    """Read ``path`` for a model with ``input_names``; cast to the model's input dtypes."""
    arrays = read_arrays(path)
    labels = arrays.pop(LABELS_KEY, None)
    if not arrays:
        raise DataError(f"{key} {path.name} holds no input arrays; save one array per input")
    if len(input_names) == 1 and len(arrays) == 1:
        inputs = {input_names[0]: next(iter(arrays.values()))}
    else:
        missing = [n for n in input_names if n not in arrays]
        if missing:
            raise DataError(f"{key} {path.name} has arrays {sorted(arrays)} but the model's inputs "
                            f"are {list(input_names)}; key the arrays by input name (missing {missing})")
        inputs = {n: arrays[n] for n in input_names}
    rows = {n: (len(a) if a.ndim else 0) for n, a in inputs.items()}
    if len(set(rows.values())) != 1 or 0 in rows.values():
        raise DataError(f"{key} {path.name}: every input needs the same number (>0) of rows along "
                        f"axis 0; got {rows}")
    if labels is not None and len(labels) != next(iter(rows.values())):
        raise DataError(f"{key} {path.name}: 'labels' has {len(labels)} rows but the inputs have "
                        f"{next(iter(rows.values()))}; give one label per row")
    cast = {}
    for n, a in inputs.items():
        want = input_dtypes.get(n)
        if want is not None and a.dtype != want:
            if a.dtype.kind != np.dtype(want).kind and not (a.dtype.kind in "iu" and np.dtype(want).kind == "f"):
                raise DataError(f"{key} {path.name}: array for input {n!r} is {a.dtype} but the "
                                f"model takes {np.dtype(want)}; save it as {np.dtype(want)}")
            a = a.astype(want)
        cast[n] = np.ascontiguousarray(a)
    return Dataset(inputs=cast, labels=labels)
