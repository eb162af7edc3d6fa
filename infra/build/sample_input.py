"""A synthetic input a model accepts, for building a model that came with no data.

Measuring a model (batch-1 latency, peak RSS) needs an input it runs on. Without
``example_input`` (or calibration/validation data) the build makes one from the graph's own
hints (:func:`infra.build.signature.dim_hints`): fixed dims as declared; symbolic dims
that share a ``dim_param`` name take the same size; sizes are tried from small to large,
batch-like dims at 1 first, with ladders chosen by the name (sequence-like names start at 8,
spatial ones include 224), because real models often reject size 1 (a ``Reshape`` into
pairs, a ``Pad``/``If`` that needs a minimum length). Zeros fill the tensors. If nothing
runs within :data:`MAX_TRIES`, the caller ships the model unmeasured and says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

MAX_TRIES = 24
GENERIC = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BATCH = (1, 2, 4, 8, 16, 32, 64)
SEQUENCE = (1, 8, 16, 32, 64, 128, 256, 512)
SPATIAL = (1, 32, 64, 128, 224, 256, 384, 512)
_BATCH_NAME = re.compile(r"^(n|b|bs|batch.*|.*_batch|num_batch.*|unk__\d+)$", re.IGNORECASE)
_SEQUENCE_NAME = re.compile(r"seq|length|len$|token|time|frame|step|word|sentence", re.IGNORECASE)
_SPATIAL_NAME = re.compile(r"height|width|^h$|^w$|size|pixel|image|img|resolution", re.IGNORECASE)
_SIZE_IN_NAME = re.compile(r"(\d{1,4})$")


@dataclass(frozen=True)
class Probe:
    """The outcome: ``feeds`` that ran (or None), how, and what failed on the way."""

    feeds: dict[str, np.ndarray] | None
    sizes: dict[str, int]
    tries: int
    last_error: str | None


def _ladder(key: str, axis: int, name: str | None) -> tuple[int, ...]:
    if name and (m := _SIZE_IN_NAME.search(name)) and int(m.group(1)) > 0:
        hinted = int(m.group(1))  # e.g. "seq_128"
        return (hinted, *(s for s in GENERIC if s != hinted))
    if name is None:
        return BATCH if axis == 0 else GENERIC
    if _BATCH_NAME.match(name):
        return BATCH
    if _SEQUENCE_NAME.search(name):
        return SEQUENCE
    if _SPATIAL_NAME.search(name):
        return SPATIAL
    return BATCH if axis == 0 else GENERIC


def dynamic_dims(hints: dict[str, list[int | str | None]]) -> dict[str, tuple[int, ...]]:
    """Each distinct dynamic dim (a ``dim_param`` name, or ``input[axis]`` when unnamed) → the
    sizes to try for it, in order."""
    dims: dict[str, tuple[int, ...]] = {}
    for inp, shape in hints.items():
        for axis, d in enumerate(shape):
            if isinstance(d, int) and d > 0:
                continue
            key = d if isinstance(d, str) else f"{inp}[{axis}]"
            dims.setdefault(key, _ladder(key, axis, d if isinstance(d, str) else None))
    return dims


def size_assignments(hints: dict[str, list[int | str | None]]) -> Iterator[dict[str, int]]:
    """Size choices for every dynamic dim, most plausible first, without repeats: all at the
    bottom of their ladders, then non-batch dims climbing with batch dims at 1, then all
    climbing together."""
    dims = dynamic_dims(hints)
    batch = {k for k, ladder in dims.items() if ladder is BATCH}
    depth = max((len(v) for v in dims.values()), default=1)
    seen: set[tuple] = set()
    plans = [{k: v[min(i, len(v) - 1)] if k not in batch else 1 for k, v in dims.items()} for i in range(depth)]
    plans += [{k: v[min(i, len(v) - 1)] for k, v in dims.items()} for i in range(depth)]
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
         max_tries: int = MAX_TRIES) -> Probe:
    """The first synthetic input ``session`` runs; ``dtypes`` maps inputs to numpy types
    (missing: BYTES, fed as empty strings)."""
    last, tries = None, 0
    quiet = quiet_run_options()
    for sizes in size_assignments(hints):
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
