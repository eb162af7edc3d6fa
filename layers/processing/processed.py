"""A model with pre/post-processing: the same interface as :class:`layers.model.Model`.

:func:`layers.model.load_model` returns a :class:`ProcessedModel` when the manifest has a
processing block, so the API handler, SageMaker and batch need no change: they call
``infer``/``run``/``validate_inputs``/``check_value``/``validate_output_names`` and read ``inputs``/``outputs``,
which here are the public signature (text/image BYTES in, label/scores out). The raw
outputs stay requestable by name; ``label``/``scores`` are computed only when asked for.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from layers import names
from layers.codec import check_shape
from layers.errors import BadRequest
from layers.manifest import Manifest, ManifestError, TensorSpec, sha256_file
from layers.processing import public_signature


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


class ProcessedModel:
    """The raw :class:`~layers.model.Model` behind text/image decoding and label/score outputs."""

    def __init__(self, manifest: Manifest, inner: Any, block: dict[str, Any], model_dir: Path) -> None:
        self.manifest, self.inner = manifest, inner
        self.threads = inner.threads
        pre, post = block.get("preprocess"), block.get("postprocess")
        raw_inputs = [s.name for s in inner.inputs]
        self.pre: Callable[[list], dict[str, np.ndarray]] | None = None
        self.kind = pre["kind"] if pre else None
        if pre is not None and pre["kind"] == "text":
            from layers.processing.text import TextPreprocessor

            self.pre = TextPreprocessor(model_dir / pre["tokenizer"], pre, raw_inputs)
        elif pre is not None:
            from layers.processing.image import ImagePreprocessor

            if len(raw_inputs) != 1:
                raise ManifestError(f"an image model takes one input; {self.name!r} takes {raw_inputs}")
            self.pre = ImagePreprocessor(pre, raw_inputs[0])
        #: the served task's record (embeddings: ``dimensions``, ``normalize``; infra/tasks)
        self.task: dict[str, Any] = dict(block.get("task") or {})
        self.entities = None
        if block.get("entities") is not None and self.kind == "text":
            from layers.processing.entities import EntityAggregator

            self.entities = EntityAggregator(block["entities"], self.pre.tokenizer)
            self._entities_from = block["entities"]["output"]
        self.post = None
        if post is not None:
            from layers.processing.post import Postprocessor

            self.post = Postprocessor(post)
        self._raw_outputs = [s.name for s in inner.outputs]
        self._output_names = [s.name for s in manifest.outputs]

    @classmethod
    def load(cls, model_dir: str | Path, manifest: Manifest, load_raw: Callable[..., Any], **options: Any):
        model_dir = Path(model_dir)
        block = manifest.extra[names.MANIFEST_PROCESSING]
        try:
            verify_files(model_dir, dict(block.get("files") or {}))
            expected = public_signature(block)
            raw = block["model_signature"]
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"manifest.json has a malformed processing block ({exc}); "
                                "rebuild with `modelfn build`.") from exc
        public = {"inputs": [t.to_dict() for t in manifest.inputs], "outputs": [t.to_dict() for t in manifest.outputs]}
        if public != expected:
            raise ManifestError("manifest.json's signature does not match its processing block; "
                                "rebuild with `modelfn build`.")
        extra = {k: v for k, v in manifest.extra.items() if k != names.MANIFEST_PROCESSING}
        raw_manifest = dataclasses.replace(manifest, inputs=_specs(raw["inputs"]),
                                           outputs=_specs(raw["outputs"]), extra=extra)
        inner = load_raw(model_dir, manifest=raw_manifest, **options)
        return cls(manifest, inner, block, model_dir)

    # --- the Model interface ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.manifest.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.manifest.outputs

    @property
    def session(self):
        return self.inner.session

    def primer_inputs(self) -> dict[str, np.ndarray] | None:
        """A real input for SnapStart priming (layers/snapstart): a short text, or a blank PNG
        of the model's size (so the decoder's first-use work lands in the snapshot too)."""
        if self.pre is None:
            return None
        (spec,) = self.inputs
        value: Any = "modelfn"
        if self.kind == "image":
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.new(self.pre.mode, (self.pre.width, self.pre.height)).save(buf, format="PNG")
            value = buf.getvalue()
        arr = np.empty(1, dtype=object)
        arr[0] = value
        return {spec.name: arr}

    def validate_inputs(self, inputs: Mapping[str, np.ndarray], *,
                        allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        if self.pre is None:
            return self.inner.validate_inputs(inputs, allow_nonfinite=allow_nonfinite)
        (spec,) = self.inputs
        if set(inputs) != {spec.name}:
            raise BadRequest(f"model {self.name!r} takes one input {spec.name!r} (BYTES, one element "
                             f"per {self.kind}); got {list(inputs)}.")
        arr = inputs[spec.name]
        if arr.dtype.kind not in "OSU":
            raise BadRequest(f"input {spec.name!r} must be BYTES; got {arr.dtype}.")
        check_shape(spec.name, arr.shape, spec)
        return {spec.name: self.check_value(spec, arr, allow_nonfinite=allow_nonfinite)}

    def check_value(self, spec: TensorSpec, arr: np.ndarray, *, allow_nonfinite: bool = False) -> np.ndarray:
        """One input whose name, datatype and shape fit (the V2 decoder checked them) → what
        :meth:`run` takes: texts as ``str``, images as bytes (see :meth:`Model.check_value`)."""
        if self.pre is None:
            return self.inner.check_value(spec, arr, allow_nonfinite=allow_nonfinite)
        if arr.dtype.kind not in "OSU":
            raise BadRequest(f"input {spec.name!r} must be BYTES; got {arr.dtype}.")
        if arr.shape[0] == 0:
            raise BadRequest(f"input {spec.name!r} is empty; send at least one {self.kind}.")
        items = arr.tolist()
        values = [_text(i, v) for i, v in enumerate(items)] if self.kind == "text" else \
            [_image_bytes(i, v) for i, v in enumerate(items)]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    def validate_output_names(self, output_names: Sequence[str] | None) -> list[str]:
        known = self._output_names
        if output_names is None:
            return known
        bad = [n for n in output_names if n not in known]
        if bad:
            raise BadRequest(f"unknown output(s) {bad}; model {self.name!r} produces {known}.")
        if len(set(output_names)) != len(output_names):
            raise BadRequest(f"output names {list(output_names)} repeat a name; request each once.")
        return list(output_names)

    def infer(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None, *,
              allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        """Pre-process, run the raw model for what is needed, post-process; outputs by name."""
        return self.run(self.validate_inputs(inputs, allow_nonfinite=allow_nonfinite), output_names)

    def run(self, feed: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """:meth:`infer` on a feed whose inputs passed the checks (:meth:`validate_inputs`, or the
        V2 decoder + :meth:`check_value`)."""
        wanted = self.validate_output_names(output_names)
        if self.entities is not None and names.ENTITIES_OUTPUT in wanted:
            return self._run_entities(next(iter(feed.values())).tolist(), wanted)
        post_wanted = self.post is not None and any(n not in self._raw_outputs for n in wanted)
        raw_names = [n for n in self._raw_outputs if n in wanted or (post_wanted and n == self.post.output)]
        if self.pre is not None:  # our tensors, checked by the raw model as any numpy caller's
            raw = self.inner.infer(self.pre(next(iter(feed.values())).tolist()), raw_names)
        else:
            raw = self.inner.run(feed, raw_names)
        if post_wanted:
            raw.update(self.post(raw[self.post.output]))
        return {n: raw[n] for n in wanted}


    def _run_entities(self, texts: list[str], wanted: list[str]) -> dict[str, np.ndarray]:
        from layers.processing.entities import to_tensor

        encodings = self.pre.encode(texts)
        raw_names = sorted({self._entities_from, *(n for n in wanted if n in self._raw_outputs)})
        raw = self.inner.infer(self.pre.tensors(encodings), raw_names)
        raw[names.ENTITIES_OUTPUT] = to_tensor(self.entities(texts, encodings, raw[self._entities_from]))
        return {n: raw[n] for n in wanted}

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Texts → (``embedding`` [N, dim] float32, tokens read): the OpenAI embeddings route's
        path, the same graph as V2's ``embedding`` output."""
        if self.pre is None or self.kind != "text" or names.EMBEDDING_OUTPUT not in self._raw_outputs:
            raise BadRequest(f"model {self.name!r} does not produce embeddings")
        encodings = self.pre.encode(texts)
        out = self.inner.infer(self.pre.tensors(encodings), [names.EMBEDDING_OUTPUT])
        return out[names.EMBEDDING_OUTPUT], self.pre.token_count(encodings)


def _text(index: int, value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except (UnicodeDecodeError, TypeError):
        raise BadRequest(f"text {index} is not UTF-8; send each text as a UTF-8 string.") from None


def _image_bytes(index: int, value: Any) -> bytes:
    """Raw bytes (binary extension, batch) or base64 text (JSON ``data``, as KServe sends it)."""
    if not isinstance(value, str):
        return bytes(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"image {index} is a JSON string that is not base64; send the image file "
                         "base64-encoded in \"data\", or its raw bytes with the binary extension.") from None
