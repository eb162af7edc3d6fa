"""Input kinds and tasks, registered by name: the one place the runtime decides what a
processed model takes and gives.

* An :class:`InputKind` turns what clients send (texts, image files, ...) into the tensors
  ``model.onnx`` takes. Its name is the manifest's ``processing.preprocess.kind`` and the name
  of the one public BYTES input ``[-1]``. Built in: ``text`` (:mod:`layers.kinds.text`) and
  ``image`` (:mod:`layers.kinds.image`).
* A :class:`Task` turns the raw outputs into what clients get, with its own public outputs.
  Its name is the manifest's ``processing.postprocess.task`` (absent: ``classification``,
  :mod:`layers.kinds.classification`: ``label`` and ``scores``).

The processed model (:mod:`layers.processing`), SnapStart priming and the batch raw-input
readers (:mod:`layers.batch.rawinputs`) ask this registry; none of them names a kind. The
build side has its own registry for the catalog keys, the build and the gate
(:mod:`infra.kinds`), keyed by the same names.

Adding an input kind or a task (e.g. ``audio``, ``embeddings``, ``token-classification``):

1. ``layers/kinds/<name>.py``: a subclass of :class:`InputKind` or :class:`Task` and a
   ``register(...)`` call at the bottom. Import heavy libraries (decoders, tokenizers) inside
   its methods, not at module level: every model's cold start imports this package.
2. Add the module to :data:`BUILTIN` so it is registered on first use.
3. ``infra/kinds/<name>.py``: the build side (catalog keys, the manifest block, raw
   calibration/validation data, gate figures), registered the same way in ``infra.kinds``.
4. Tests beside the existing ones (tests/text for text and image).

A task with another output contract (an ``embedding`` FP32 ``[-1, dim]``, entities, generated
text) says so in :meth:`Task.public_outputs`; :meth:`Task.postprocessor` gets the raw outputs it
names plus the request's items and the input kind's tensors (attention masks for pooling,
offsets for entities). A kind or task whose batch files are not lines, csv cells or one item per
object implements :meth:`InputKind.batch_reader` / :meth:`Task.batch_reader`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layers.registry import PluginRegistry

#: Modules registering the built-in kinds and tasks, imported on first use of the registry.
BUILTIN = ("layers.kinds.text", "layers.kinds.image", "layers.kinds.classification", "layers.kinds.embeddings",
           "layers.kinds.token_classification", "layers.kinds.generation")
#: The task of a ``postprocess`` block without a ``task`` key (manifests before tasks existed).
DEFAULT_TASK = "classification"


class KindError(LookupError):
    """No input kind or task by that name is registered."""


class InputKind:
    """How one kind of raw input (one element of the public BYTES input) becomes tensors.

    Class attributes describe the kind; the methods do the work. ``batch_*`` say which batch
    files hold this kind's items (:mod:`layers.batch.rawinputs` reads them).
    """

    name: str = ""
    noun: str = ""
    """One item, in messages: "send at least one {noun}"."""
    batch_line_suffixes: tuple[str, ...] = ()
    """Batch files holding one item per line (``.txt``)."""
    batch_csv: bool = False
    """A ``.csv`` column of items (the column named like the input, or the only one)."""
    batch_file_suffixes: tuple[str, ...] = ()
    """Batch objects that are one item each (``.png``): one request per object."""
    batch_hint: str = ""
    """How to send this kind in a batch, for a refusal of another format."""
    file_format: str = ""
    """What the object files must be, e.g. ``PNG/JPEG`` (for "is not decoded as ...")."""
    probe_items: tuple[Any, ...] = ()
    """Items the build's probe runs through a fresh pre-processor (its first-use cost in init)."""

    def preprocessor(self, config: Mapping[str, Any], files: Mapping[str, Path],
                     raw_inputs: list[str]) -> Callable[[list], dict[str, np.ndarray]]:
        """The manifest's ``preprocess`` block → a callable: items → ``model.onnx``'s inputs.
        ``files``: the block's side files by name (next to ``model.onnx`` at run time)."""
        raise NotImplementedError

    def item(self, index: int, value: Any) -> Any:
        """One element of the public input (bytes, or str from JSON) → what the
        pre-processor takes; a client mistake is a :class:`layers.errors.BadRequest`."""
        raise NotImplementedError

    def primer(self, preprocessor: Any) -> Any:
        """A real item for SnapStart priming (so first-use work lands in the snapshot)."""
        raise NotImplementedError

    def batch_reader(self, path: Path, suffix: str, model: Any) -> Any | None:
        """A batch reader for a format the ``batch_*`` attributes cannot describe, else None."""
        return None


@dataclass
class Context:
    """What a task's post-processor may need besides the raw outputs of one request."""

    items: list | None = None
    """The request's raw items (texts, image bytes), None for a model without an input kind."""
    features: dict[str, np.ndarray] = field(default_factory=dict)
    """The tensors the input kind made of them (e.g. ``attention_mask``)."""
    encodings: list | None = None
    """The text kind's tokenizer encodings of the items (offsets, masks), when it made them."""
    preprocessor: Any = None
    """The input kind's configured pre-processor that made ``features``."""


class Postprocessor:
    """A task's configured post-processing: ``needs`` raw outputs → public outputs."""

    needs: tuple[str, ...] = ()

    def __call__(self, raw: dict[str, np.ndarray], context: Context) -> dict[str, np.ndarray]:
        raise NotImplementedError


class Task:
    """What a processed model gives: public outputs made from the raw ones."""

    name: str = ""
    batch_line_suffixes: tuple[str, ...] = ()
    batch_file_suffixes: tuple[str, ...] = ()

    def public_outputs(self, raw_outputs: list[dict[str, Any]],
                       config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The V2 output specs clients see (the raw ones stay requestable if listed here)."""
        raise NotImplementedError

    def postprocessor(self, config: Mapping[str, Any]) -> Postprocessor:
        raise NotImplementedError

    def batch_reader(self, path: Path, suffix: str, model: Any) -> Any | None:
        """A batch reader of this task's own raw inputs (e.g. chat messages), else None."""
        return None


_registry: PluginRegistry[InputKind, Task] = PluginRegistry(
    kind_base=InputKind, task_base=Task, builtin=lambda: BUILTIN, error=KindError, known="this runtime knows")


def register(plugin: InputKind | Task, *, replace: bool = False) -> InputKind | Task:
    """Register an input kind or a task under its ``name``; returns it."""
    return _registry.register(plugin, replace=replace)


def unregister(name: str) -> None:
    """Remove an input kind or task (tests registering their own)."""
    _registry.unregister(name)


def input_kinds() -> dict[str, InputKind]:
    return _registry.kinds()


def tasks() -> dict[str, Task]:
    return _registry.tasks()


def input_kind(name: str) -> InputKind:
    """The registered input kind ``name``; :class:`KindError` names the known ones."""
    return _registry.kind(name)


def task(name: str | None) -> Task:
    """The registered task ``name`` (None: :data:`DEFAULT_TASK`)."""
    return _registry.task(name or DEFAULT_TASK)


def task_of(postprocess: Mapping[str, Any]) -> Task:
    """The task of a manifest's ``postprocess`` block."""
    return task(postprocess.get("task"))


def for_batch_file(suffix: str) -> InputKind | None:
    """The input kind whose items are whole objects with ``suffix`` (``.png``), if any."""
    return next((k for k in input_kinds().values() if suffix in k.batch_file_suffixes), None)


def batch_suffixes() -> tuple[str, ...]:
    """Every raw-input suffix a registered kind or task reads in a batch."""
    found: list[str] = []
    for p in (*input_kinds().values(), *tasks().values()):
        found += [s for s in (*p.batch_line_suffixes, *p.batch_file_suffixes) if s not in found]
    return tuple(found)
