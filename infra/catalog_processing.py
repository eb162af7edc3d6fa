"""Catalog keys for what clients send and get: ``preprocess``, ``postprocess``, ``pipeline``.

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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ImagePreprocess(BaseModel):
    """PNG/JPEG bytes → float32 tensor: decode, RGB (3 channels) or L (1), resize, /255, normalize."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    size: tuple[int, int] = Field(description="[height, width] the model takes")
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @model_validator(mode="after")
    def _channels(self) -> ImagePreprocess:
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
            raise ValueError("mean and std need one value per channel: 3 (RGB) or 1 (grayscale)")
        if min(self.size) < 1 or any(s == 0 for s in self.std):
            raise ValueError("size must be positive and std non-zero")
        return self


class Preprocess(BaseModel):
    """Text (``tokenizer``) or image (``image``) pre-processing, run inside the function."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tokenizer: Path | None = None
    max_length: int = Field(default=128, ge=1, le=8192)
    padding: Literal["longest", "max_length"] = "longest"
    truncation: bool = True
    image: ImagePreprocess | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Preprocess:
        if (self.tokenizer is None) == (self.image is None):
            raise ValueError("give exactly one of 'tokenizer' (text in) or 'image' (PNG/JPEG in)")
        return self

    @property
    def kind(self) -> Literal["text", "image"]:
        return "text" if self.tokenizer is not None else "image"


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


_NESTED = {"preprocess": Preprocess, "postprocess": Postprocess, "pipeline": PipelineStep}


def nested_fields(loc: tuple) -> list[str] | None:
    """The allowed keys at an ``extra_forbidden`` error inside one of these blocks."""
    if loc[0] not in _NESTED:
        return None
    if loc[0] == "preprocess" and len(loc) > 2 and loc[1] == "image":
        return list(ImagePreprocess.model_fields)
    return list(_NESTED[loc[0]].model_fields)


def _abs(root: Path, p: Path | None) -> Path | None:
    return None if p is None or p.is_absolute() else root / p


def resolve_processing(spec: Any, root: Path) -> dict[str, Any]:
    """The ``model_copy`` update that makes these blocks' paths absolute."""
    update: dict[str, Any] = {}
    if spec.preprocess is not None and (p := _abs(root, spec.preprocess.tokenizer)) is not None:
        update["preprocess"] = spec.preprocess.model_copy(update={"tokenizer": p})
    if spec.postprocess is not None and (p := _abs(root, spec.postprocess.labels_file)) is not None:
        update["postprocess"] = spec.postprocess.model_copy(update={"labels_file": p})
    return update


def tokenizer_file(path: Path) -> Path:
    """``tokenizer.json`` itself, or inside a Hugging Face directory."""
    return path / "tokenizer.json" if path.is_dir() else path


def check_processing(spec: Any, where: str) -> list[str]:
    """File and consistency problems of these blocks (names checked in :func:`check_pipelines`)."""
    problems = []
    pre, post = spec.preprocess, spec.postprocess
    if pre is not None and pre.tokenizer is not None and not tokenizer_file(pre.tokenizer).is_file():
        problems.append(f"{where}: key 'preprocess.tokenizer': {tokenizer_file(pre.tokenizer)} does not "
                        "exist; point it at a tokenizer.json or the Hugging Face directory holding one "
                        "(tokenizer.save_pretrained writes it)")
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
