"""A model with pre/post-processing: the same interface as :class:`layers.model.Model`.

:func:`layers.model.load_model` returns a :class:`ProcessedModel` when the manifest has a
processing block, so the API handler, SageMaker and batch need no change: they call
``infer``/``run``/``validate_inputs``/``check_value``/``validate_output_names`` and read ``inputs``/``outputs``,
which here are the public signature (an input kind's BYTES in, a task's outputs out: see
:mod:`layers.kinds`). The raw outputs stay requestable by name; the task's outputs are
computed only when asked for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from layers import kinds, names
from layers.codec import check_shape
from layers.errors import BadRequest
from layers.manifest import Manifest, ManifestError, TensorSpec, sha256_file
from layers.processing import public_signature
from layers.servable import Servable, ServableBase


def _specs(tensors: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec.from_dict(t) for t in tensors)


def verify_files(model_dir: Path, files: dict[str, str]) -> None:
    """Each shipped side file exists and has the sha256 the build recorded."""
    for fname, digest in files.items():
        path = model_dir / fname
        if not path.is_file():
            raise ManifestError(f"{model_dir} lacks {fname}, which its manifest lists; copy the whole "
                                "directory `modelfn build` wrote (build/models/<name>).")
        if sha256_file(path) != digest:
            raise ManifestError(f"{path} does not match its sha256 in manifest.json: it was changed "
                                "after the build. Rebuild with `modelfn build`.")


class _SideFiles(Mapping[str, Path]):
    """The side files an input kind names in its block, next to ``model.onnx``."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir

    def __getitem__(self, name: str) -> Path:
        return self.model_dir / name

    def __iter__(self):
        return (p.name for p in self.model_dir.iterdir())

    def __len__(self) -> int:
        return sum(1 for _ in self.model_dir.iterdir())


class ProcessedModel(ServableBase):
    """The raw :class:`~layers.model.Model` behind an input kind's decoding and a task's outputs
    (both from the :mod:`layers.kinds` registry)."""

    def __init__(self, manifest: Manifest, inner: Servable, block: dict[str, Any], model_dir: Path) -> None:
        self.manifest, self.inner = manifest, inner
        self.threads = inner.threads
        pre, post = block.get("preprocess"), block.get("postprocess")
        raw_inputs = [s.name for s in inner.inputs]
        self.input_kind: kinds.InputKind | None = None
        self.pre: Callable[[list], dict[str, np.ndarray]] | None = None
        try:
            if pre is not None:
                self.input_kind = kinds.input_kind(pre["kind"])
                files = _SideFiles(model_dir)
                self.pre = self.input_kind.preprocessor(pre, files, raw_inputs)
            self.post = kinds.task_of(post).postprocessor(post) if post is not None else None
        except kinds.KindError as exc:
            raise ManifestError(f"model {manifest.name!r}: {exc.args[0]}; rebuild it with this "
                                "version's `modelfn build`.") from None
        self.kind = self.input_kind.name if self.input_kind is not None else None
        self.task_name = kinds.task_of(post).name if post is not None else None
        #: the served task's record (embeddings: ``dimensions``, ``normalize``; infra/tasks)
        self.task: dict[str, Any] = dict(block.get("task") or {})
        self._raw_outputs = [s.name for s in inner.outputs]
        self._output_names = [s.name for s in manifest.outputs]

    @classmethod
    def load(cls, model_dir: str | Path, manifest: Manifest, load_raw: Callable[..., Servable],
             **options: Any) -> ProcessedModel:
        model_dir = Path(model_dir)
        block = manifest.extra[names.MANIFEST_PROCESSING]
        try:
            verify_files(model_dir, dict(block.get("files") or {}))
            expected = public_signature(block)
            raw = block["model_signature"]
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"manifest.json has a malformed processing block ({exc}); "
                                "rebuild with `modelfn build`.") from exc
        except kinds.KindError as exc:
            raise ManifestError(f"model {manifest.name!r}: {exc.args[0]}; rebuild it with this "
                                "version's `modelfn build`.") from None
        public = {"inputs": [t.to_dict() for t in manifest.inputs], "outputs": [t.to_dict() for t in manifest.outputs]}
        if public != expected:
            raise ManifestError("manifest.json's signature does not match its processing block; "
                                "rebuild with `modelfn build`.")
        extra = {k: v for k, v in manifest.extra.items() if k != names.MANIFEST_PROCESSING}
        raw_manifest = dataclasses.replace(manifest, inputs=_specs(raw["inputs"]),
                                           outputs=_specs(raw["outputs"]), extra=extra)
        inner = load_raw(model_dir, manifest=raw_manifest, **options)
        return cls(manifest, inner, block, model_dir)

    @property
    def session(self):
        return self.inner.session

    def primer_inputs(self) -> dict[str, np.ndarray] | None:
        """A real input for SnapStart priming (layers/snapstart): the input kind's primer item
        (a short text, a blank PNG of the model's size)."""
        if self.pre is None:
            return None
        (spec,) = self.inputs
        arr = np.empty(1, dtype=object)
        arr[0] = self.input_kind.primer(self.pre)
        return {spec.name: arr}

    def validate_inputs(self, inputs: Mapping[str, np.ndarray], *,
                        allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        if self.pre is None:
            return self.inner.validate_inputs(inputs, allow_nonfinite=allow_nonfinite)
        (spec,) = self.inputs
        if set(inputs) != {spec.name}:
            raise BadRequest(f"model {self.name!r} takes one input {spec.name!r} (BYTES, one element "
                             f"per {self.input_kind.noun}); got {list(inputs)}.")
        arr = inputs[spec.name]
        if arr.dtype.kind not in "OSU":
            raise BadRequest(f"input {spec.name!r} must be BYTES; got {arr.dtype}.")
        check_shape(spec.name, arr.shape, spec)
        return {spec.name: self.check_value(spec, arr, allow_nonfinite=allow_nonfinite)}

    def check_value(self, spec: TensorSpec, arr: np.ndarray, *, allow_nonfinite: bool = False) -> np.ndarray:
        """One input whose name, datatype and shape fit (the V2 decoder checked them) → what
        :meth:`run` takes: the input kind's items (texts as ``str``, images as bytes)."""
        if self.pre is None:
            return self.inner.check_value(spec, arr, allow_nonfinite=allow_nonfinite)
        if arr.dtype.kind not in "OSU":
            raise BadRequest(f"input {spec.name!r} must be BYTES; got {arr.dtype}.")
        if arr.shape[0] == 0:
            raise BadRequest(f"input {spec.name!r} is empty; send at least one {self.input_kind.noun}.")
        item = self.input_kind.item
        values = [item(i, v) for i, v in enumerate(arr.tolist())]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    def run(self, feed: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Pre-process, run the raw model for what is needed, post-process; outputs by name. The
        feed's inputs passed the checks (:meth:`validate_inputs`, or the V2 decoder +
        :meth:`check_value`)."""
        wanted = self.validate_output_names(output_names)
        post_wanted = self.post is not None and any(n not in self._raw_outputs for n in wanted)
        raw_names = [n for n in self._raw_outputs if n in wanted or (post_wanted and n in self.post.needs)]
        context = kinds.Context()
        if self.pre is not None:  # our tensors, checked by the raw model as any numpy caller's
            context.items = next(iter(feed.values())).tolist()
            if hasattr(self.pre, "encode"):  # text: the encodings stay for the task (offsets)
                context.encodings = self.pre.encode(context.items)
                context.features, context.preprocessor = self.pre.tensors(context.encodings), self.pre
            else:
                context.features = self.pre(context.items)
            raw = self.inner.infer(context.features, raw_names)
        else:
            raw = self.inner.run(feed, raw_names)
        if post_wanted:
            raw.update(self.post(raw, context))
        return {n: raw[n] for n in wanted}

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Texts → (``embedding`` [N, dim] float32, tokens read): the OpenAI embeddings route's
        path, the same graph as V2's ``embedding`` output."""
        if self.pre is None or self.kind != "text" or names.EMBEDDING_OUTPUT not in self._raw_outputs:
            raise BadRequest(f"model {self.name!r} does not produce embeddings")
        encodings = self.pre.encode(texts)
        out = self.inner.infer(self.pre.tensors(encodings), [names.EMBEDDING_OUTPUT])
        return out[names.EMBEDDING_OUTPUT], self.pre.token_count(encodings)
