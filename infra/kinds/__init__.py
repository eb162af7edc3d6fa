"""Build side of the input kinds and tasks (:mod:`layers.kinds` is the runtime side), registered
by the same names: the one place the catalog and the build decide what a kind or task means.

* A :class:`BuildKind` owns its keys of the catalog's ``preprocess:`` block (``tokenizer``,
  ``max_length``, ... for text; ``image: {...}`` for images), checks and resolves them, writes
  the manifest's ``preprocess`` block and side files, and reads raw calibration/validation
  data (the runtime's own pre-processing then makes the tensors).
* A :class:`BuildTask` writes the manifest's ``postprocess`` block from the catalog's
  ``postprocess:`` and adds its own figures to the accuracy gate (classification:
  ``label_agreement``, ``max_score_error``).

The catalog schema (:mod:`infra.catalog_processing`), the build (:mod:`infra.build.processing`,
``probe``, ``compose``, ``fit``) ask this registry; none of them names a kind.

Adding an input kind or a task: ``infra/kinds/<name>.py`` with a subclass of
:class:`BuildKind` / :class:`BuildTask`, ``register(...)`` at its bottom, the module added to
:data:`BUILTIN`; plus the runtime module ``layers/kinds/<name>.py`` (see :mod:`layers.kinds`).
A task whose figures need their own tolerance keys adds them to
:class:`infra.catalog.Tolerance` and :func:`infra.build.accuracy.check`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from layers.registry import PluginRegistry

#: Modules registering the built-in build kinds and tasks, imported on first use.
BUILTIN = ("infra.kinds.text", "infra.kinds.image", "infra.kinds.classification", "infra.kinds.embeddings",
           "infra.kinds.token_classification", "infra.kinds.generation")


class ProcessingError(ValueError):
    """``preprocess``/``postprocess`` do not fit the model; the message says how to fix it."""


class BuildKind:
    """The build side of one input kind (same ``name`` as its :class:`layers.kinds.InputKind`)."""

    name: str = ""
    selector: str = ""
    """The ``preprocess:`` key whose presence chooses this kind (``tokenizer``, ``image``)."""
    choice: str = ""
    """How the "give exactly one of" message names it: ``'tokenizer' (text in)``."""
    catalog_fields: ClassVar[Mapping[str, tuple[Any, Any]]] = {}
    """This kind's keys of the ``preprocess:`` block: name → (type, default), as pydantic's
    ``create_model`` takes them (the selector among them, default None)."""
    raw_data_suffixes: tuple[str, ...] = ()
    """Raw calibration/validation files this kind reads (``.txt``, ``.jsonl``)."""
    raw_data_folder: bool = False
    """Whether a folder of files (labelled by sub-folder) is raw data of this kind."""
    libraries: tuple[str, ...] = ()
    """The runtime packages its pre-processing imports (their share of the image, in the fit)."""
    gate_one_by_one: bool = False
    """The gate runs rows one request each, as clients send them (texts: each its own length)."""

    def resolve(self, pre: Any, root: Path) -> Any:
        """``pre`` with its paths made absolute against the catalog's directory."""
        return pre

    def check(self, pre: Any, where: str) -> list[str]:
        """File problems of ``pre`` (each names the model, the key and the fix)."""
        return []

    def digests(self, pre: Any) -> dict[str, str]:
        """sha256 of the files ``pre`` names, for the build's cache key."""
        return {}

    def block(self, pre: Any, sig: dict[str, Any], model_config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
        """The manifest's ``preprocess`` block (with ``"kind": name``) and its side files by name.
        ``model_config``: the source's Hugging Face ``config.json`` ({} for other sources)."""
        raise NotImplementedError

    def probe_sizes(self, pre_block: Mapping[str, Any]) -> dict[str, int]:
        """Sizes of the symbolic dims a data-less build probes with (:func:`infra.build.sample_input.find`'s
        ``defaults``: ``sequence``, ``spatial``), from the manifest's ``preprocess`` block."""
        return {}

    def read_items(self, path: Path, key: str) -> tuple[list, list]:
        """Raw data at ``path`` → (items, labels or []); a :class:`ValueError` says what is wrong."""
        raise NotImplementedError

    def step_files(self, pre_block: Mapping[str, Any], step_dir: Path) -> dict[str, Path]:
        """Side files a pipeline takes over with this block from the step built in ``step_dir``."""
        return {}


class BuildTask:
    """The build side of one task (same ``name`` as its :class:`layers.kinds.Task`)."""

    name: str = ""

    def block(self, post: Any, sig: dict[str, Any], model_config: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest's ``postprocess`` block from the catalog's ``postprocess:``."""
        raise NotImplementedError

    def gate_outputs(self, post: Mapping[str, Any], output_names: list[str],
                     outputs: list[np.ndarray]) -> list[np.ndarray]:
        """``outputs`` + what the function returns for them, for the gate to compare."""
        return outputs

    def gate_figures(self, post: Mapping[str, Any], reference: list[np.ndarray],
                     candidate: list[np.ndarray]) -> dict[str, float]:
        """This task's gate figures between two runs (after :meth:`gate_outputs`)."""
        return {}


_registry: PluginRegistry[BuildKind, BuildTask] = PluginRegistry(
    kind_base=BuildKind, task_base=BuildTask, builtin=lambda: BUILTIN, error=ProcessingError)


def register(plugin: BuildKind | BuildTask, *, replace: bool = False) -> BuildKind | BuildTask:
    """Register a build kind or task under its ``name``; returns it."""
    return _registry.register(plugin, replace=replace)


def unregister(name: str) -> None:
    _registry.unregister(name)


def kinds() -> dict[str, BuildKind]:
    return _registry.kinds()


def tasks() -> dict[str, BuildTask]:
    return _registry.tasks()


def kind(name: str) -> BuildKind:
    return _registry.kind(name)


def task(name: str | None) -> BuildTask:
    from layers.kinds import DEFAULT_TASK

    return _registry.task(name or DEFAULT_TASK)


def raw_data_suffixes() -> tuple[str, ...]:
    """Every raw calibration/validation suffix a registered kind reads."""
    found: list[str] = []
    for k in kinds().values():
        found += [s for s in k.raw_data_suffixes if s not in found]
    return tuple(found)
