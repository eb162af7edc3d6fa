"""What every transport serves: the one :class:`Servable` interface, declared once.

:func:`layers.model.load_model` returns a Servable: a plain :class:`layers.model.Model` (an
onnxruntime session over the manifest's tensors), or a
:class:`layers.processing.processed.ProcessedModel` (an input kind's decoding and a task's
outputs around one; a catalog ``pipeline:`` is merged into one graph at build time, so a
composed model is one of these two as well). The HTTP binding, SageMaker, the batch job and
SnapStart priming use this interface only, never the concrete classes.

:class:`ServableBase` holds what both share (the signature from the manifest, ``infer`` as
checks + ``run``, the output-name checks), so no implementation copies another's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from layers.errors import BadRequest
from layers.manifest import Manifest, TensorSpec


@runtime_checkable
class Servable(Protocol):
    """A loaded model as the data plane sees it.

    ``inputs``/``outputs`` are the public V2 signature (what clients send and get); ``kind``
    is the input kind that decodes raw inputs (``"text"``, ``"image"``, see
    :mod:`layers.kinds`), None for a model that takes tensors as they are; ``task_name`` the task
    that makes its public outputs (``"classification"``), None for raw outputs only.
    """

    manifest: Manifest
    threads: int

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def kind(self) -> str | None: ...

    @property
    def task_name(self) -> str | None: ...

    def infer(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None, *,
              allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        """Check ``inputs`` (numpy callers: batch, SDK) and run: outputs by name."""
        ...

    def run(self, feed: Mapping[str, np.ndarray],
            output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run on a ``feed`` that passed :meth:`validate_inputs` (or the V2 decoder +
        :meth:`check_value`): each input is checked once, not twice."""
        ...

    def validate_inputs(self, inputs: Mapping[str, np.ndarray], *,
                        allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        """Names, dtypes, shapes and values of numpy ``inputs`` against the signature → the feed."""
        ...

    def check_value(self, spec: TensorSpec, arr: np.ndarray, *,
                    allow_nonfinite: bool = False) -> np.ndarray:
        """The value checks of one input whose name, datatype and shape already fit ``spec``."""
        ...

    def validate_output_names(self, output_names: Sequence[str] | None) -> list[str]:
        """The requested output names (all when None), each known and asked for once."""
        ...

    def primer_inputs(self) -> dict[str, np.ndarray] | None:
        """A real input for SnapStart priming, or None for the generic zeros (layers/snapstart)."""
        ...


class ServableBase:
    """The parts of :class:`Servable` every implementation shares. Subclasses set ``manifest``
    and ``_output_names`` (the public output names, in signature order) and implement
    :meth:`run`, :meth:`validate_inputs` and :meth:`check_value`."""

    manifest: Manifest
    _output_names: list[str]
    kind: str | None = None
    task_name: str | None = None

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

    def run(self, feed: Mapping[str, np.ndarray],
            output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def validate_inputs(self, inputs: Mapping[str, np.ndarray], *,
                        allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def infer(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None, *,
              allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        """Run the model on ``inputs`` (validated against the signature) → outputs by name.

        NaN/Inf in floating-point inputs are rejected (a 400 naming the input) unless
        ``allow_nonfinite``: a non-finite feature is almost always an upstream bug, and most
        models silently turn it into a confident wrong answer.
        """
        return self.run(self.validate_inputs(inputs, allow_nonfinite=allow_nonfinite), output_names)

    def validate_output_names(self, output_names: Sequence[str] | None) -> list[str]:
        return check_output_names(self.name, self._output_names, output_names)

    def primer_inputs(self) -> dict[str, np.ndarray] | None:
        return None


def check_output_names(model: str, known: list[str], requested: Sequence[str] | None) -> list[str]:
    """``requested`` (all of ``known`` when None), each a known name asked for once; else a 400."""
    if requested is None:
        return known
    bad = [n for n in requested if n not in known]
    if bad:
        raise BadRequest(f"unknown output(s) {bad}; model {model!r} produces {known}.")
    if len(set(requested)) != len(requested):
        raise BadRequest(f"output names {list(requested)} repeat a name; request each once.")
    return list(requested)
