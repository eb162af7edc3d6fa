"""The local stack's control routes: training and versions over HTTP, running the CLI's code.

:class:`LocalControl` is the :class:`~layers.protocols.control.ControlBackend` of ``modelfn
up``: ``POST /v2/models/{name}/train`` queues a run of
:func:`infra.train.lifecycle.train_and_promote` (what ``modelfn train`` runs) on a thread,
one run per model at a time; a promotion is hot-swapped by the stack like any other.
Versions, promote and rollback call :mod:`infra.versions.command`'s functions, so they
answer what ``modelfn versions/promote/rollback --json`` print. Runs are kept as JSON under
``<out>/training-runs/<model>/<run_id>.json`` (outside the model directory, which a
promotion replaces). :class:`ControlIntegration` puts it behind the local gateway.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from infra.local.http_api_events import HttpRequest, HttpResponse
from layers.errors import BadRequest, NotFound
from layers.messages import Request
from layers.protocols.control import Conflict, dispatch
from layers.routes import Route

log = logging.getLogger("modelfn.local.control")
RUNS_DIR = "training-runs"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class LocalControl:
    """Training runs and versions of the catalog's models, in ``out_dir``."""

    catalog_path: Path
    out_dir: Path
    aws: Any = None  # infra.local.s3.LocalAws: s3:// data on the stack's own bucket
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _active: dict[str, str] = field(default_factory=dict)  # model -> run id in progress
    _threads: list[threading.Thread] = field(default_factory=list)

    # --- training --------------------------------------------------------------------------
    def _spec(self, model: str):
        from infra.catalog import CatalogError, load_catalog

        catalog = load_catalog(self.catalog_path)  # read again: the catalog may have changed
        try:
            return catalog, catalog.get(model)
        except CatalogError:
            raise NotFound(f"no model named {model!r} in {self.catalog_path.name}; models: "
                           f"{', '.join(m.name for m in catalog.models)}") from None

    def start_training(self, model: str, hyperparameters: dict[str, Any], data: str | None) -> dict[str, Any]:
        catalog, spec = self._spec(model)
        if spec.training is None:
            raise BadRequest(f"model {model!r} has no 'training:' entry in the catalog, so there is nothing "
                             "to run; add one with entry_point (README \"Training\")")
        declared = set(spec.training.hyperparameters)
        if declared and (unknown := sorted(set(hyperparameters) - declared)):
            raise BadRequest(f"unknown hyperparameter(s) {unknown} for {model!r}; its training entry "
                             f"declares {sorted(declared)} (training.hyperparameters in the catalog)")
        source = self._data_source(spec, data)
        run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        run = {"model": model, "run_id": run_id, "status": "queued", "created_at": _now(),
               "started_at": None, "finished_at": None, "hyperparameters": {**spec.training.hyperparameters,
                                                                             **hyperparameters},
               "data": data or spec.training.data, "version": None, "promoted": None, "reason": None,
               "metrics": {}, "error": None}
        with self._lock:
            if (active := self._active.get(model)) is not None:
                raise Conflict(f"a training run of {model!r} is already in progress ({active}); wait for it "
                               f"(GET /v2/models/{model}/train/{active}) and start the next one then")
            self._active[model] = run_id
            self._save(run)
            accepted = dict(run)  # the answer is the run as accepted: the thread updates `run` at once
        thread = threading.Thread(target=self._train, args=(catalog, run, hyperparameters, source),
                                  name=f"train-{model}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return accepted

    def _data_source(self, spec, data: str | None) -> str | Path | None:
        """What ``train_and_promote(data=...)`` gets: a folder, an s3:// prefix to mirror, or
        None (the catalog's ``training.data``); refused now if it cannot work."""
        if data is None:
            if spec.training.data is None:
                raise BadRequest(f"model {spec.name!r} has no training.data; send \"data\" (an s3:// prefix "
                                 "on the stack's bucket, or a folder) in the body or the query")
            if spec.training.data_is_s3:
                return spec.training.data
            return None
        if data.startswith("s3://"):
            bucket = data[5:].split("/", 1)[0]
            if self.aws is None or bucket != self.aws.bucket:
                where = f"s3://{self.aws.bucket}/<prefix>" if self.aws is not None else "a folder"
                raise BadRequest(f"data {data!r} is not on this stack's S3 (the local stack reads {where}); "
                                 "upload the training files there")
            return data
        folder = Path(data).expanduser()
        folder = folder if folder.is_absolute() else self.catalog_path.parent / folder
        if not folder.is_dir():
            raise BadRequest(f"data {data!r} is not a folder here; send an s3:// prefix on the stack's bucket "
                             "or a folder of training files")
        return folder

    def _mirror(self, model: str, run_id: str, url: str) -> Path:
        from infra.train.retrain import mirror_prefix

        bucket, _, prefix = url[5:].partition("/")
        dest = self.out_dir / RUNS_DIR / model / f"{run_id}-data"
        if mirror_prefix(self.aws.client("s3"), bucket, prefix, dest) == 0:
            raise BadRequest(f"no training data under {url}; upload the training files there first")
        return dest

    def _train(self, catalog, run: dict[str, Any], hyperparameters: dict[str, Any],
               source: str | Path | None) -> None:
        from infra.catalog import CatalogError
        from infra.train.lifecycle import BuildFailed, train_and_promote
        from infra.train.local import TrainingError

        model = run["model"]
        run.update(status="running", started_at=_now())
        self._save(run)
        try:
            data = self._mirror(model, run["run_id"], source) if isinstance(source, str) else source
            outcome = train_and_promote(catalog, model, self.out_dir, data=data, hyperparameters=hyperparameters)
        except (TrainingError, BuildFailed, CatalogError, BadRequest) as exc:
            why = exc.reason if isinstance(exc, TrainingError) else str(exc)
            run.update(status="failed", error=why, reason=why)
        except Exception as exc:  # a bug: the run says so, the stack goes on
            log.exception("%s: training run %s failed", model, run["run_id"])
            run.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            run.update(status="succeeded", version=outcome.version, number=outcome.number,
                       parent_version=outcome.parent_version, promoted=outcome.promoted,
                       reason=outcome.reason, metrics=outcome.metrics, mode=outcome.mode,
                       training={k: outcome.training.get(k) for k in ("seconds", "device", "data", "world_size")
                                 if k in outcome.training})
        finally:
            run["finished_at"] = _now()
            with self._lock:
                self._save(run)
                self._active.pop(model, None)
        log.info("%s: training run %s %s", model, run["run_id"], run["status"])

    def _path(self, model: str, run_id: str) -> Path:
        return self.out_dir / RUNS_DIR / model / f"{run_id}.json"

    def _save(self, run: dict[str, Any]) -> None:
        path = self._path(run["model"], run["run_id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(run, indent=2, default=str))
        os.replace(tmp, path)

    def training_run(self, model: str, run_id: str) -> dict[str, Any]:
        self._spec(model)
        if "/" in run_id or run_id.startswith("."):
            raise NotFound(f"no training run {run_id!r} of {model!r}")
        try:
            return json.loads(self._path(model, run_id).read_text())
        except (OSError, ValueError):
            raise NotFound(f"no training run {run_id!r} of {model!r}; GET /v2/models/{model}/train "
                           "lists its runs") from None

    def training_runs(self, model: str) -> list[dict[str, Any]]:
        self._spec(model)
        folder = self.out_dir / RUNS_DIR / model
        runs = []
        for f in folder.glob("*.json") if folder.is_dir() else ():
            try:
                runs.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                continue
        return sorted(runs, key=lambda r: r.get("run_id", ""), reverse=True)

    def wait(self, timeout_s: float | None = None) -> None:
        """Join the run threads (stack shutdown, tests)."""
        for t in list(self._threads):
            t.join(timeout_s)

    # --- versions ------------------------------------------------------------------------
    def versions(self, model: str) -> dict[str, Any]:
        from infra.versions.command import versions_doc
        from infra.versions.store import VersionError

        self._spec(model)
        try:
            return versions_doc(self.out_dir, model)
        except VersionError as exc:
            raise NotFound(str(exc)) from None

    def promote(self, model: str, version: str) -> dict[str, Any]:
        from infra.versions.command import SignatureChange, promote_version
        from infra.versions.store import VersionError

        self._spec(model)
        try:
            return promote_version(self.out_dir, model, version)
        except SignatureChange as exc:  # not missing: refused, as the CLI refuses it without --force
            raise BadRequest(str(exc)) from None
        except VersionError as exc:
            raise NotFound(str(exc)) from None

    def rollback(self, model: str) -> dict[str, Any]:
        from infra.versions.command import rollback_version
        from infra.versions.store import VersionError

        self._spec(model)
        try:
            return rollback_version(self.out_dir, model)
        except VersionError as exc:
            raise Conflict(str(exc)) from None


@dataclass
class ControlIntegration:
    """The gateway's integration for the control routes (the deployed API's control function)."""

    backend: Any  # a ControlBackend

    def __call__(self, req: HttpRequest, route: Route, params: dict[str, str]) -> HttpResponse:
        request = Request(method=req.method, path=req.path, params=params,
                          headers={k.lower(): v for k, v in req.headers}, raw_body=req.body,
                          query=dict(parse_qsl(req.query, keep_blank_values=True)))
        request.headers.setdefault("x-forwarded-proto", "http")
        reply = dispatch(self.backend, request, route, log)
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        return HttpResponse(reply.status, body, [("content-type", reply.content_type),
                                                 *(reply.headers or {}).items()])
