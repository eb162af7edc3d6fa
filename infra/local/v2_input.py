"""V2 inference requests from user files, for ``modelfn invoke`` and the ``up`` banner.

A ``.json`` file is sent as written; ``.npz`` (arrays keyed by input name; a single-input
model takes its one array by any key), ``.npy`` and ``.csv`` (single-input models, one row
per request row) are encoded against the model's metadata (``GET /v2/models/NAME``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class InputError(ValueError):
    """The input file cannot become a V2 request; the message says why and how to fix it."""


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Arrays from a .npz / .npy / .csv file (csv/npy: one unnamed array, key ``""``)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        if suffix == ".csv":
            try:
                arr = np.loadtxt(path, delimiter=",", ndmin=2)
            except ValueError:  # a header line
                arr = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)
            return {"": arr}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} could not be read as {suffix} ({exc})") from exc
    raise InputError(f"{path}: use a .json V2 request or .npz/.npy/.csv tensors")


def v2_request(arrays: dict[str, np.ndarray], metadata: dict[str, Any], *, rows: slice | None = None) -> dict:
    """A V2 JSON request for the model described by ``metadata`` (its ``inputs``)."""
    from layers.codec import encode_tensor, to_numpy_dtype

    inputs = metadata.get("inputs") or []
    data = {k: v for k, v in arrays.items() if k != "labels"}
    if len(inputs) == 1 and len(data) == 1:
        data = {inputs[0]["name"]: next(iter(data.values()))}
    missing = [t["name"] for t in inputs if t["name"] not in data]
    if missing:
        raise InputError(f"no array for input(s) {missing}; the model {metadata.get('name')!r} takes "
                         f"{[t['name'] for t in inputs]} (give .npz keys with those names)")
    tensors = []
    for t in inputs:
        arr = np.asarray(data[t["name"]])
        if rows is not None:
            arr = arr[rows]
        tensors.append(encode_tensor(t["name"], arr.astype(to_numpy_dtype(t["datatype"]), copy=False)))
    return {"inputs": tensors}


def load_request(path: Path, fetch_metadata) -> bytes:
    """The request body for ``path``; ``fetch_metadata()`` is called only for tensor files."""
    if path.suffix.lower() == ".json":
        try:
            body = path.read_bytes()
            json.loads(body)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path} is not a readable JSON V2 request ({exc})") from exc
        return body
    arrays = load_arrays(path)
    return json.dumps(v2_request(arrays, fetch_metadata())).encode()
