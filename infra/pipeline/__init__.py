"""Old name of :mod:`infra.build` (the build was called "the pipeline", which also names the
catalog's ``pipeline:`` composition and the CDK batch pipeline). Kept so that code calling the
Python API documented before the rename, ``infra.pipeline.build_catalog(...)``, still works."""

from infra.build import STAGES, BuildError, BuildResult, BuildSettings, build_catalog, build_model

__all__ = ["STAGES", "BuildError", "BuildResult", "BuildSettings", "build_catalog", "build_model"]
