"""Build side of the ``embeddings`` and ``feature-extraction`` tasks (runtime:
:mod:`layers.kinds.embeddings`).

Their ``postprocess`` block is written from the model directory (infra/tasks/build.py: the
sentence-transformers pooling and normalization, or the catalog's ``embedding:``), never from
a catalog ``postprocess:``. Their gate figures are what search relies on
(:mod:`infra.tasks.embedding_gate`): per-text cosine to fp32 and top-10 retrieval agreement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from infra.kinds import BuildTask, ProcessingError, register


class EmbeddingsBuild(BuildTask):
    name = "embeddings"

    def block(self, post: Any, sig: dict[str, Any], model_config: Mapping[str, Any]) -> dict[str, Any]:
        raise ProcessingError(f"'postprocess' scores classes; a {self.name} model's vectors come from its "
                              "directory's pooling (or the catalog's 'embedding:' key): remove 'postprocess'")

    def gate_figures(self, post: Mapping[str, Any], reference: list[np.ndarray],
                     candidate: list[np.ndarray]) -> dict[str, float]:
        from infra.tasks.embedding_gate import figures

        return figures(reference[0], candidate[0])


class FeatureExtractionBuild(EmbeddingsBuild):
    name = "feature-extraction"


register(EmbeddingsBuild())
register(FeatureExtractionBuild())
