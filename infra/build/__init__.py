"""The build pipeline: catalog → ONNX → int8 behind an accuracy gate → versioned artifact.

``build_catalog`` is what ``modelfn build`` and the local stack call; each model is built
independently (one failure does not stop the others) into ``<out_dir>/models/<name>/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from infra.build.builder import (
    STAGES,
    BuildError,
    BuildResult,
    BuildSettings,
    StageCallback,
    build_model,
)
from infra.catalog import Catalog

__all__ = ["STAGES", "BuildError", "BuildResult", "BuildSettings", "build_catalog", "build_model"]


def build_catalog(catalog: Catalog, out_dir: str | Path, models: Sequence[str] | None = None,
                  force: bool = False, *, on_stage: StageCallback | None = None,
                  settings: BuildSettings | None = None) -> list[BuildResult]:
    """Build ``models`` (default: all) of ``catalog``; unchanged ones are reused, not rebuilt.

    Raises :class:`infra.catalog.CatalogError` for a name not in the catalog; every other
    problem is reported in that model's :class:`BuildResult` (``ok=False``, ``error``).
    """
    from infra.build import artifact

    specs = [catalog.get(n) for n in models] if models else list(catalog.models)
    specs = _with_steps_first(catalog, specs)
    artifact.sweep_stale(artifact.models_dir(Path(out_dir)))
    return [build_model(s, catalog.root, Path(out_dir), force=force, on_stage=on_stage, settings=settings)
            for s in specs]


def _with_steps_first(catalog: Catalog, specs: list) -> list:
    """Pipelines after every model, with their steps added: a pipeline merges the steps' builds."""
    from infra.catalog_processing import step_name

    names = [s.name for s in specs]
    for spec in specs:
        for step in spec.pipeline or ():
            if step_name(step) not in names:
                names.append(step_name(step))
    chosen = [catalog.get(n) for n in names]
    return [s for s in chosen if s.pipeline is None] + [s for s in chosen if s.pipeline is not None]
