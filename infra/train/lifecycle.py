"""Train → build the next version → gate it against the live one → promote it or say why not.

What ``modelfn train`` and local retraining (``modelfn up``) both run. The trained artifact
(``model.onnx``, a torch module saved whole, a sklearn estimator, or a Hugging Face directory
such as a fine-tuned causal LM, built as ``hf:``) goes through the normal
build pipeline (convert → int8 behind the accuracy gate → measure) as the catalog entry with
that artifact as its ``source``; the built version is kept under ``versions/<version>/`` with
its lineage, then :func:`infra.versions.gate.judge` decides against the live version.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.catalog import Catalog, CatalogError
from infra.train.local import LineSink, TrainingError, TrainingRun, data_dir_for, run_local
from infra.versions.gate import judge
from infra.versions.store import VersionStore
from layers.names import TRAINING_REPORT_FILE

StageSink = Callable[[str], None]


class BuildFailed(RuntimeError):
    """The trained model did not build; the message is the build's error."""


@dataclass
class TrainOutcome:
    model: str
    version: str
    number: int
    parent_version: str | None
    promoted: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    mode: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "number": self.number,
                "parent_version": self.parent_version, "promoted": self.promoted,
                "reason": self.reason, "mode": self.mode, "metrics": self.metrics,
                "training": self.training}


@contextlib.contextmanager
def _importable(directory: Path) -> Iterator[None]:
    """The user's classes must be importable while the build unpickles a trained module."""
    added = str(directory) not in sys.path
    if added:
        sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        if added:
            sys.path.remove(str(directory))


def trained_run(model_dir: Path, job: str | None = None) -> TrainingRun:
    """A finished training job's ``/opt/ml/model`` (e.g. a SageMaker job's unpacked
    ``model.tar.gz``), to build and gate without training again."""
    report_path = model_dir / TRAINING_REPORT_FILE
    try:
        report = json.loads(report_path.read_text())
        artifact = model_dir / report["artifact"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"{model_dir} is not a training job's model directory (no readable "
                            f"{TRAINING_REPORT_FILE} naming its artifact: {exc}); pass the unpacked "
                            "model.tar.gz of a job that ran functions/training/train.py") from exc
    if not artifact.exists():
        raise TrainingError(f"{model_dir}: {TRAINING_REPORT_FILE} names {artifact.name}, which is not there")
    return TrainingRun(job=job or report.get("job") or model_dir.name, model_dir=model_dir, report=report,
                       log=model_dir / "training.log", data_dir=Path(report.get("data", {}).get("location", "")))


def train_and_promote(catalog: Catalog, name: str, out_dir: Path, *, data: str | Path | None = None,
                      hyperparameters: Mapping[str, Any] | None = None, on_line: LineSink | None = None,
                      on_stage: StageSink | None = None, trained: Path | None = None) -> TrainOutcome:
    """One lifecycle step for ``name``. Raises :class:`CatalogError` (no ``training:``),
    :class:`TrainingError` or :class:`BuildFailed`; a candidate that loses is not an error.
    With ``trained`` (a finished job's model directory) it builds and gates that, without training."""
    spec = catalog.get(name)
    if spec.training is None:
        raise CatalogError(f"model {name!r} has no 'training:' entry in {catalog.path}; add one with "
                           "entry_point (see README \"Training\")")
    stage = on_stage or (lambda _s: None)
    store = VersionStore(out_dir, name)
    with tempfile.TemporaryDirectory(prefix=f"modelfn-train-{name}-") as tmp:
        work = Path(tmp)
        if trained is not None:
            run = trained_run(Path(trained))
        else:
            data_dir = data_dir_for(spec, data)
            if not data_dir.is_dir():
                raise TrainingError(f"no training data: {data_dir} does not exist; put the training files "
                                    "there or pass --data DIR")
            stage("train")
            run = run_local(spec, catalog.root, data_dir=data_dir, work=work / "job",
                            hyperparameters=hyperparameters, on_line=on_line)
        stage("build")
        manifest = _build(catalog, spec, run, work / "build", stage)
        with store.locked():
            store.adopt_live()
            parent = store.live_version()
            number = store.next_number()
            manifest["parent_version"] = parent
            manifest["source"] = f"trained: {spec.training.entry_point}"
            manifest["lineage"] = _lineage(run, number)
            built = work / "build" / "models" / name
            vdir = store.add(built, manifest, {TRAINING_REPORT_FILE: run.model_dir / TRAINING_REPORT_FILE,
                                               "training.log": run.log})
            stage("gate")
            verdict = judge(spec, vdir, store.live_dir if parent else None)
            version = manifest["version"]
            if verdict.promote:
                stage("promote")
                store.promote(version, reason=verdict.reason, metrics=verdict.metrics)
            else:
                store.decide(version, promoted=False, reason=verdict.reason, metrics=verdict.metrics)
            kept = store._info(vdir)
    return TrainOutcome(model=name, version=version, number=kept.number, parent_version=kept.parent_version,
                        promoted=verdict.promote, reason=verdict.reason, metrics=verdict.metrics,
                        training=run.report, mode=kept.mode)


#: Files of a Hugging Face directory that a fine-tuning run usually leaves as they were: taken
#: from the catalog's ``hf:`` source when the trained directory lacks them (the model alone
#: was saved)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                   "generation_config.json")


def _trained_source(spec, run: TrainingRun, work: Path) -> str:
    """The candidate's ``source``: the trained file, or ``hf:<dir>`` for a saved Hugging Face
    directory (completed with the catalog source's tokenizer files it lacks, in a copy)."""
    artifact = run.artifact
    if not artifact.is_dir():
        return str(artifact)
    if not (artifact / "config.json").is_file():
        raise BuildFailed(f"the trained directory {artifact} has no config.json: save the model with "
                          "save_pretrained (or return it from the entry point)")
    base = spec.source_path if spec.source_kind == "hf" else None
    missing = [n for n in TOKENIZER_FILES if base is not None and (base / n).is_file() and not (artifact / n).exists()]
    if not missing:
        return f"hf:{artifact}"
    import shutil

    merged = work / "trained-hf"
    shutil.copytree(artifact, merged, ignore=shutil.ignore_patterns(TRAINING_REPORT_FILE, "training.log"))
    for name in missing:
        shutil.copyfile(base / name, merged / name)
    return f"hf:{merged}"


def _build(catalog: Catalog, spec, run: TrainingRun, out: Path, stage: StageSink) -> dict[str, Any]:
    from infra.build import build_model

    candidate = spec.model_copy(update={"source": _trained_source(spec, run, out.parent)})
    code_dir, _, _ = spec.training.entry(catalog.root)
    with _importable(code_dir):
        result = build_model(candidate, catalog.root, out, force=True,
                             on_stage=lambda _m, s: stage(f"build: {s}"))
    if not result.ok or result.manifest is None:
        raise BuildFailed(result.error or "the build failed without a reason")
    return dict(result.manifest)


def _lineage(run: TrainingRun, number: int) -> dict[str, Any]:
    report = run.report
    return {"origin": "training", "number": number, "training_job": run.job,
            "entry_point": report.get("entry_point"), "hyperparameters": report.get("hyperparameters", {}),
            "data": report.get("data", {}), "device": report.get("device"),
            "training_seconds": report.get("seconds"), "artifact": report.get("artifact"),
            "world_size": report.get("world_size", 1)}
