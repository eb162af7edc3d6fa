"""Build side of the ``token-classification`` task (runtime: :mod:`layers.kinds.token_classification`).

Its ``postprocess`` block (labels from ``id2label``, ``simple`` aggregation) is written from the
``*ForTokenClassification`` directory (infra/tasks/build.py). The gate judges the per-token
logits the generic way (run one text at a time, tokens flattened: the share of tokens whose
best label is unchanged, per-token cosine and largest error); entities follow from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.kinds import BuildTask, ProcessingError, register


class TokenClassificationBuild(BuildTask):
    name = "token-classification"

    def block(self, post: Any, sig: dict[str, Any], model_config: Mapping[str, Any]) -> dict[str, Any]:
        raise ProcessingError("'postprocess' scores whole texts; a token-classification model's entities "
                              "come from its directory's id2label: remove 'postprocess'")


register(TokenClassificationBuild())
