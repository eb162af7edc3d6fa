"""V2 inference requests from user files, for ``modelfn invoke`` and the ``up`` banner.

A ``.json`` file is sent as written; ``.txt`` (one text per line) and ``.png``/``.jpg`` go to
models with a ``text``/``image`` BYTES input; ``.npz`` (arrays keyed by input name; a single-input
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
    if path.suffix.lower() in RAW_SUFFIXES:
        return json.dumps(raw_request(path, fetch_metadata())).encode()
    arrays = load_arrays(path)
    return json.dumps(v2_request(arrays, fetch_metadata())).encode()


RAW_SUFFIXES = (".txt", ".png", ".jpg", ".jpeg")


def raw_request(path: Path, metadata: dict[str, Any]) -> dict:
    """A text model's request from a .txt (one text per line), an image model's from a PNG/JPEG
    (base64 in JSON ``data``, as KServe clients send images)."""
    import base64

    inputs = metadata.get("inputs") or []
    if len(inputs) != 1 or inputs[0]["datatype"] != "BYTES":
        raise InputError(f"{path.name} holds raw text/image, but model {metadata.get('name')!r} takes "
                         f"{[(t['name'], t['datatype']) for t in inputs]}; send .npz/.npy/.csv tensors or .json")
    try:
        if path.suffix.lower() == ".txt":
            data = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            data = [base64.b64encode(path.read_bytes()).decode()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} could not be read ({exc})") from exc
    if not data:
        raise InputError(f"{path} holds no text; put one text per line")
    return {"inputs": [{"name": inputs[0]["name"], "shape": [len(data)], "datatype": "BYTES", "data": data}]}
