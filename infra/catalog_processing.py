"""Catalog keys for what clients send and get: ``preprocess``, ``postprocess``, ``pipeline``.

The ``preprocess:`` keys are the registered input kinds' (:mod:`infra.kinds`: each kind's
``catalog_fields``, chosen by its selector key); built in:

* ``preprocess: {tokenizer: <tokenizer.json | hf dir>, max_length: N, padding: longest|max_length,
  truncation: true}``: the model takes a ``text`` BYTES input, tokenized in the image with the
  Rust ``tokenizers`` library;
  ``preprocess: {image: {size: [H, W], mean: [...], std: [...], layout: NCHW}}``: an ``image``
  BYTES input of PNG/JPEG bytes, decoded, resized, scaled to [0, 1] and normalized.
* ``postprocess: {softmax: true|false, labels: [...] | labels_file: F, top_k: K, output: NAME}``
  (``softmax`` unset: decided from the model, :mod:`infra.build.scores`)
  adds ``label`` (BYTES) and ``scores`` (FP32) outputs next to the raw ones; with neither
  labels nor labels_file an ``hf:`` source's ``id2label`` names the classes.
* ``pipeline: [a, {model: b, inputs: {b_input: a_output}}]``: one served model made of other
  catalog entries, in order (see :mod:`infra.build.compose`).

Paths are relative to the catalog file and resolved once, here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from infra import kinds as build_kinds


class PreprocessBase(BaseModel):
    """One input kind's pre-processing, run inside the function. The keys are the registered
    kinds' (:mod:`infra.kinds`); exactly one kind's selector key is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _one_kind(self) -> PreprocessBase:
        chosen = [k for k in build_kinds.kinds().values() if getattr(self, k.selector, None) is not None]
        if len(chosen) != 1:
            choices = " or ".join(k.choice for k in build_kinds.kinds().values())
            raise ValueError(f"give exactly one of {choices}")
        return self

    @property
    def kind(self) -> str:
        """The input kind's name (``text``, ``image``): the one whose selector key is set."""
        return next(k.name for k in build_kinds.kinds().values() if getattr(self, k.selector, None) is not None)


_preprocess_models: dict[tuple[str, ...], type[PreprocessBase]] = {}


def preprocess_model() -> type[PreprocessBase]:
    """The ``preprocess:`` schema: every registered kind's keys (rebuilt when a kind registers)."""
    registered = build_kinds.kinds()
    key = tuple(f"{n}:{id(k)}" for n, k in registered.items())
    if key not in _preprocess_models:
        fields: dict[str, Any] = {}
        for k in registered.values():
            fields.update(k.catalog_fields)
        _preprocess_models[key] = create_model("Preprocess", __base__=PreprocessBase, **fields)
    return _preprocess_models[key]


Preprocess = preprocess_model()


class Postprocess(BaseModel):
    """Scores and label names from a classifier's raw output."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    softmax: bool | None = None  # None: decided from the model (infra/build/scores.py)
    labels: tuple[str, ...] | None = None
    labels_file: Path | None = None
    top_k: int | None = Field(default=None, ge=1)
    output: str | None = None  # the raw output holding class scores; default: the first [N, C] float

    @model_validator(mode="after")
    def _one_source(self) -> Postprocess:
        if self.labels is not None and self.labels_file is not None:
            raise ValueError("give 'labels' or 'labels_file', not both")
        return self


class PipelineStep(BaseModel):
    """One step of a pipeline: a catalog entry and where its inputs come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    inputs: dict[str, str] = Field(default_factory=dict)  # this step's input ← previous step's output


def nested_fields(loc: tuple) -> list[str] | None:
    """The allowed keys at an ``extra_forbidden`` error inside one of these blocks."""
    nested = {"preprocess": preprocess_model(), "postprocess": Postprocess, "pipeline": PipelineStep}
    if loc[0] not in nested:
        return None
    if loc[0] == "preprocess" and len(loc) > 2:  # inside one kind's own block (image: {...})
        field = nested["preprocess"].model_fields.get(str(loc[1]))
        block = next((t for t in getattr(field.annotation, "__args__", ()) if isinstance(t, type)
                      and issubclass(t, BaseModel)), None) if field is not None else None
        if block is not None:
            return list(block.model_fields)
    return list(nested[loc[0]].model_fields)


def _abs(root: Path, p: Path | None) -> Path | None:
    return None if p is None or p.is_absolute() else root / p


def resolve_processing(spec: Any, root: Path) -> dict[str, Any]:
    """The ``model_copy`` update that makes these blocks' paths absolute."""
    update: dict[str, Any] = {}
    if spec.preprocess is not None:
        resolved = build_kinds.kind(spec.preprocess.kind).resolve(spec.preprocess, root)
        if resolved is not spec.preprocess:
            update["preprocess"] = resolved
    if spec.postprocess is not None and (p := _abs(root, spec.postprocess.labels_file)) is not None:
        update["postprocess"] = spec.postprocess.model_copy(update={"labels_file": p})
    return update


def check_processing(spec: Any, where: str) -> list[str]:
    """File and consistency problems of these blocks (names checked in :func:`check_pipelines`)."""
    problems = []
    pre, post = spec.preprocess, spec.postprocess
    if pre is not None:
        problems.extend(build_kinds.kind(pre.kind).check(pre, where))
    if post is not None and post.labels_file is not None and not post.labels_file.is_file():
        problems.append(f"{where}: key 'postprocess.labels_file': {post.labels_file} does not exist; "
                        "give a text file with one label per line (class 0 first)")
    if spec.pipeline is not None and len(spec.pipeline) < 2:
        problems.append(f"{where}: key 'pipeline': a pipeline needs at least two steps; serve a single "
                        "model as its own entry")
    return problems


def step_name(step: str | PipelineStep) -> str:
    return step if isinstance(step, str) else step.model


def check_pipelines(specs: list[Any]) -> list[str]:
    """Every pipeline step names another, non-pipeline catalog entry."""
    by_name = {s.name: s for s in specs}
    problems = []
    for spec in specs:
        for step in spec.pipeline or ():
            name = step_name(step)
            other = by_name.get(name)
            if other is None:
                problems.append(f"model {spec.name!r}: key 'pipeline': no catalog entry named {name!r}; "
                                f"steps are names of other entries ({', '.join(by_name)})")
            elif other.pipeline is not None:
                problems.append(f"model {spec.name!r}: key 'pipeline': step {name!r} is itself a pipeline; "
                                "list its steps instead")
    return problems
