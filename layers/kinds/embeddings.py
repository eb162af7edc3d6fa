"""The ``embeddings`` and ``feature-extraction`` tasks: one vector per text, ``embedding`` FP32
``[-1, dim]``.

Pooling and normalization are in the exported graph (infra/tasks/heads.py), so the raw output
is already what clients get: the task adds no output and its post-processor does nothing.
Its manifest block records what the vector is (``dimensions``, ``pooling``, ``normalize``),
which the OpenAI protocol reads (``dimensions``) and the build's gate keys on
(infra/kinds/embeddings.py: per-text cosine and top-10 retrieval agreement).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from layers.kinds import Context, Postprocessor, Task, register


class _Vectors(Postprocessor):
    needs = ()

    def __call__(self, raw: dict[str, np.ndarray], context: Context) -> dict[str, np.ndarray]:
        return {}


class EmbeddingsTask(Task):
    name = "embeddings"

    def public_outputs(self, raw_outputs: list[dict[str, Any]],
                       config: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(raw_outputs)

    def postprocessor(self, config: Mapping[str, Any]) -> Postprocessor:
        return _Vectors()


class FeatureExtractionTask(EmbeddingsTask):
    """A bare encoder pooled as the catalog's ``embedding:`` says (not normalized by default)."""

    name = "feature-extraction"


EMBEDDINGS = register(EmbeddingsTask())
FEATURE_EXTRACTION = register(FeatureExtractionTask())
