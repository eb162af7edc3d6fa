"""A synthetic input a model accepts, for building a model that came with no data.

Measuring a model (batch-1 latency, peak RSS) needs an input it runs on. Without
``example_input`` (or calibration/validation data) the build makes one from the graph's own
hints (:func:`infra.build.signature.dim_hints`): fixed dims as declared; symbolic dims
that share a ``dim_param`` name take the same size. Each symbolic dim starts at the
documented default for what it holds (:data:`DEFAULTS`), so the figures are those of a
plausible served request rather than of the smallest tensor that runs:

* batch dims (axis 0 of an input, or named ``batch``/``N``/…): **1**;
* sequence dims (named ``seq``/``length``/``token``/…; or the text pre-processing's
  ``max_length`` when the catalog has one): **128**;
* spatial dims (named ``height``/``width``/``size``/…, or the two non-channel dims of a 4-D
  input whose channel dim is 1, 3 or 4 — ``NCHW`` or ``NHWC``; or the image pre-processing's
  ``size``): **224**;
* any other dim: **1**.

A dim's *name* is never read as its size: exporters name unknown dims ``unk__214`` or
``dim_0``, and a name's digits are not a shape. When the default does not run (a model that
needs an even length, a minimum size), sizes are tried along a ladder around the default
within :data:`MAX_TRIES`; zeros fill the tensors. If nothing runs, the caller ships the model
unmeasured and says so. Figures measured this way are *estimates* (the manifest and the build
table say so, with the shapes used); ``example_input`` makes them real.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

MAX_TRIES = 24
#: The documented default size per kind of symbolic dim (module docstring).
DEFAULTS = {"batch": 1, "sequence": 128, "spatial": 224, "other": 1}
GENERIC = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BATCH = (1, 2, 4, 8, 16, 32, 64)
SEQUENCE = (128, 64, 256, 32, 512, 16, 8, 1)
SPATIAL = (224, 256, 320, 192, 384, 160, 128, 512, 96, 64, 32)
LADDERS = {"batch": BATCH, "sequence": SEQUENCE, "spatial": SPATIAL, "other": GENERIC}
_BATCH_NAME = re.compile(r"^(n|b|bs|batch.*|.*_batch|num_batch.*)$", re.IGNORECASE)
_SEQUENCE_NAME = re.compile(r"seq|length|len$|token|time|frame|step|word|sentence", re.IGNORECASE)
_SPATIAL_NAME = re.compile(r"height|width|^h$|^w$|size|pixel|image|img|resolution", re.IGNORECASE)
_CHANNELS = (1, 3, 4)


@dataclass(frozen=True)
class Probe:
    """The outcome: ``feeds`` that ran (or None), how, and what failed on the way."""

    feeds: dict[str, np.ndarray] | None
    sizes: dict[str, int]
    tries: int
    last_error: str | None


def dim_kind(axis: int, name: str | None, shape: list[int | str | None]) -> str:
    """``batch``, ``sequence``, ``spatial`` or ``other`` for one symbolic dim (docstring above)."""
    if name and _BATCH_NAME.match(name):
        return "batch"
    if name and _SEQUENCE_NAME.search(name):
        return "sequence"
    if name and _SPATIAL_NAME.search(name):
        return "spatial"
    if axis == 0:
        return "batch"
    if len(shape) == 4 and ((shape[1] in _CHANNELS and axis in (2, 3)) or (shape[3] in _CHANNELS and axis in (1, 2))):
        return "spatial"
    return "other"


def _ladder(default: int, kind: str) -> tuple[int, ...]:
    return (default, *(s for s in LADDERS[kind] if s != default))


def dynamic_dims(hints: dict[str, list[int | str | None]],
                 defaults: dict[str, int] | None = None) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each distinct dynamic dim (a ``dim_param`` name, or ``input[axis]`` when unnamed) → its
    kind and the sizes to try for it, the default first. ``defaults`` overrides
    :data:`DEFAULTS` per kind (the catalog's pre-processing: ``max_length``, image ``size``)."""
    sizes = {**DEFAULTS, **(defaults or {})}
    dims: dict[str, tuple[str, tuple[int, ...]]] = {}
    for inp, shape in hints.items():
        for axis, d in enumerate(shape):
            if isinstance(d, int) and d > 0:
                continue
            key = d if isinstance(d, str) else f"{inp}[{axis}]"
            if key not in dims:
                kind = dim_kind(axis, d if isinstance(d, str) else None, shape)
                dims[key] = (kind, _ladder(sizes[kind], kind))
    return dims


def size_assignments(hints: dict[str, list[int | str | None]],
                     defaults: dict[str, int] | None = None) -> Iterator[dict[str, int]]:
    """Size choices for every dynamic dim, most plausible first, without repeats: all at their
    defaults, then non-batch dims along their ladders with batch dims at 1, then all together."""
    dims = dynamic_dims(hints, defaults)
    batch = {k for k, (kind, _) in dims.items() if kind == "batch"}
    depth = max((len(v) for _, v in dims.values()), default=1)
    seen: set[tuple] = set()
    plans = [{k: v[min(i, len(v) - 1)] if k not in batch else 1 for k, (_, v) in dims.items()} for i in range(depth)]
    plans += [{k: v[min(i, len(v) - 1)] for k, (_, v) in dims.items()} for i in range(depth)]
    for plan in plans:
        key = tuple(sorted(plan.items()))
        if key not in seen:
            seen.add(key)
            yield plan


def feeds_for(hints: dict[str, list[int | str | None]], dtypes: dict[str, type],
              sizes: dict[str, int]) -> dict[str, np.ndarray]:
    feeds = {}
    for inp, shape in hints.items():
        dims = [d if isinstance(d, int) and d > 0 else sizes[d if isinstance(d, str) else f"{inp}[{axis}]"]
                for axis, d in enumerate(shape)]
        dtype = dtypes.get(inp)
        feeds[inp] = np.full(dims, "", dtype=object) if dtype is None else np.zeros(dims, dtype)
    return feeds


def quiet_run_options():
    """Run options that keep onnxruntime from logging each rejected probe to stderr (the
    build reports the outcome itself)."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 4
    return options


def find(session, hints: dict[str, list[int | str | None]], dtypes: dict[str, type],
         max_tries: int = MAX_TRIES, defaults: dict[str, int] | None = None) -> Probe:
    """The first synthetic input ``session`` runs; ``dtypes`` maps inputs to numpy types
    (missing: BYTES, fed as empty strings)."""
    last, tries = None, 0
    quiet = quiet_run_options()
    for sizes in size_assignments(hints, defaults):
        if tries >= max_tries:
            break
        tries += 1
        feeds = feeds_for(hints, dtypes, sizes)
        try:
            session.run(None, feeds, quiet)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            continue
        return Probe(feeds, sizes, tries, last)
    return Probe(None, {}, tries, last)
