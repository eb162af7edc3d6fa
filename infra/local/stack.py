"""The whole local stack for one catalog: build what is stale, start, serve, stop.

Used by ``modelfn up``, the end-to-end tests and the benchmark. Every model gets what the CDK
app gives it, from the same plan (infra/targets): the plan's image functions (api behind the
gateway, batch fed by its S3 prefix) or, for SageMaker-target models, the serving container
behind the same routes. The local stack and the CDK app are siblings over that plan.
A model that fails to build or start is reported with its cause; the others still serve.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.environment import function_environment
from infra.local import processes
from infra.local.function_pool import FunctionPool, FunctionSpec
from infra.local.gateway import Gateway, LambdaIntegration, Routes
from infra.local.s3 import CREDENTIALS, LocalAws, QueuePoller, QueueSettings
from infra.local.sagemaker import SageMakerIntegration, SageMakerServer
from infra.targets.provider import local_provider
from layers import names
from layers.manifest import Manifest, ManifestError, read_manifest
from layers.openai_router import Deployed
from layers.openai_wire import created_of

if TYPE_CHECKING:
    from infra.local.containers import ImageSet
    from infra.targets.deploy_spec import DeploySpec
    from infra.targets.plan import ModelPlan

log = logging.getLogger("modelfn.local")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ModelService:
    name: str
    manifest: Manifest | None = None
    api: FunctionPool | None = None
    batch: FunctionPool | None = None
    sagemaker: SageMakerServer | None = None
    deploy: DeploySpec | None = None
    plan: ModelPlan | None = None
    failure: str | None = None  # build or init failure, named for the user

    @property
    def target(self) -> str:
        return self.plan.target if self.plan else "lambda"


@dataclass
class LocalStack:
    """Everything ``modelfn up`` runs. ``port``/``s3_port`` 0 picks free ports (tests)."""

    catalog_path: Path
    out_dir: Path
    host: str = "127.0.0.1"
    port: int = 3000
    s3_port: int = 4566
    warm: int = 1
    build: bool = True
    log_sink: processes.LogSink | None = None  # function output; None: discard
    on_build_stage: Callable[[str, str], None] | None = None  # (model, stage) while building
    integration_timeout_s: float = names.HTTP_API_TIMEOUT_S
    cwd: Path = REPO_ROOT
    containers: ImageSet | None = None  # run every function from its image (up --containers)
    services: dict[str, ModelService] = field(default_factory=dict)
    gateway: Gateway | None = None
    aws: LocalAws | None = None
    pollers: list[QueuePoller] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    watch_interval_s: float = 0.5  # how often the live versions are checked for a hot swap
    _swap_lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None
    _unstartable: dict[str, str] = field(default_factory=dict)  # model -> version that failed init
    _trained: tuple[str, ...] = ()
    _catalog: Any = None  # infra.catalog.Catalog, once started
    retrainers: dict[str, Any] = field(default_factory=dict)  # model -> infra.train.retrain.Retrainer
    control: Any = None  # infra.local.control.LocalControl: training and versions over HTTP

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> LocalStack:
        t0 = time.perf_counter()
        if self.port:
            processes.check_port(self.host, self.port, "--port")
        if self.s3_port:
            processes.check_port(self.host, self.s3_port, "--s3-port")
        from infra.catalog import load_catalog

        catalog = load_catalog(self.catalog_path)
        self.services = {m.name: ModelService(m.name) for m in catalog.models}
        self._trained = tuple(m.name for m in catalog.models if m.training is not None)
        self._catalog = catalog
        if self.build:
            self._build(catalog)
        self.timings["build_s"] = time.perf_counter() - t0
        from infra.targets import plan_model
        from infra.targets.deploy_spec import NotBuiltError, load_deploy_spec

        for spec in catalog.models:
            svc = self.services[spec.name]
            if svc.failure is None:
                try:  # sized, targeted and wired by the same plan as the CDK app
                    svc.deploy = load_deploy_spec(spec, self.out_dir)
                    svc.plan = plan_model(svc.deploy)
                    svc.manifest = svc.deploy.manifest
                except (NotBuiltError, ManifestError) as exc:
                    svc.failure = f"not built: {exc}"
        if self.containers is not None:  # build the images of what was built (modelfn image)
            ready = [s for s in self.services.values() if s.failure is None]
            for name, why in self.containers.prepare([s.deploy for s in ready], self.out_dir).items():
                self.services[name].failure = f"image build failed: {why}"
        try:
            self._start_services()
        except BaseException:
            self.stop()
            raise
        self.timings["ready_s"] = time.perf_counter() - t0
        return self

    def _build(self, catalog) -> None:
        """Build what is stale (the pipeline reuses cached artifacts); isolate failures."""
        from infra.build import build_catalog

        try:
            results = build_catalog(catalog, self.out_dir, on_stage=self.on_build_stage)
        except Exception:  # one model broke the batch build: build one by one to name it
            results = []
            for svc in self.services.values():
                try:
                    results += build_catalog(catalog, self.out_dir, models=[svc.name],
                                             on_stage=self.on_build_stage)
                except Exception as exc:
                    svc.failure = f"build failed: {exc}"
        for r in results or []:
            err = getattr(r, "error", None) or (None if getattr(r, "ok", True) else "unknown cause")
            name = getattr(r, "name", None)
            if err and name in self.services:
                self.services[name].failure = f"build failed: {err}"

    def _start_services(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.aws = LocalAws(self.host, self.s3_port).start()
        queues = {s.name: QueueSettings.of(s.deploy.batch_timeout_s, s.deploy.batch)
                  for s in self.services.values() if s.failure is None and s.target != "sagemaker"}
        for spec in self._catalog.models:  # not built yet: its first `modelfn train` starts it
            if spec.training is not None and self.services[spec.name].deploy is None:
                queues.setdefault(spec.name, QueueSettings.of(names.LAMBDA_MAX_TIMEOUT_S, spec.batch))
        self.aws.create_resources(queues, train_models=self._trained)
        starters: list[threading.Thread] = []
        for svc in self.services.values():
            if svc.failure is not None:
                continue
            if svc.target == "sagemaker":
                env = function_environment(model_name=svc.name, kind="sagemaker",
                                           model_dir=str(self._model_dir(svc.name)),
                                           execution_provider=local_provider(
                                               svc.plan.image.execution_provider, model=svc.name,
                                               containers=self.containers is not None))
                server = (self.containers.sagemaker_server(svc.name, self._model_dir(svc.name))
                          if self.containers else SageMakerServer)
                svc.sagemaker = server(svc.name, {**env, **self._aws_env()}, str(self.cwd),
                                       log=self._sink(f"{svc.name}/sagemaker"))
                starters.append(threading.Thread(target=svc.sagemaker.start))
                continue
            for kind, pool in self._pools(svc, self._model_dir(svc.name)).items():
                setattr(svc, kind, pool)
                starters.append(threading.Thread(target=pool.start))
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        from infra.local.control import ControlIntegration, LocalControl

        self.control = LocalControl(Path(self.catalog_path), Path(self.out_dir), self.aws)
        routes = Routes(default=self._default_integration, control=ControlIntegration(self.control),
                        registry=self._openai_registry)
        for svc in self.services.values():
            why = svc.failure or (svc.api.failure if svc.api else None) or \
                (svc.sagemaker.failure if svc.sagemaker else None)
            if why:
                svc.failure = svc.failure or f"init failed: {why}"
                routes.failed[svc.name] = svc.failure
            elif svc.sagemaker:
                routes.models[svc.name] = SageMakerIntegration(svc.sagemaker)
            elif svc.api:
                routes.models[svc.name] = LambdaIntegration(svc.api)
            if not why and (stream := self._streaming(svc)) is not None:
                routes.streams[svc.name] = stream
        self.gateway = Gateway(routes, host=self.host, port=self.port,
                               integration_timeout_s=self.integration_timeout_s).start()
        for svc in self.services.values():
            if svc.batch is not None:
                if svc.batch.failure:
                    log.warning("%s: batch function failed to init: %s", svc.name, svc.batch.failure)
                self.pollers.append(QueuePoller(svc.name, self.aws.queue_urls[svc.name], svc.batch, self.aws,
                                                settings=self.aws.settings[svc.name]).start())
        self._watcher = threading.Thread(target=self._watch_versions, daemon=True, name="version-watch")
        self._watcher.start()
        from infra.train.retrain import Retrainer

        for model in self._trained:
            self.retrainers[model] = Retrainer(model, self.aws.train_queue_urls[model], self.aws,
                                               self.catalog_path, self.out_dir).start()

    def _pools(self, svc: ModelService, model_dir: Path) -> dict[str, FunctionPool]:
        """The plan's image functions (api, batch) of a Lambda-target model serving ``model_dir``."""
        dspec, pools = svc.deploy, {}
        for fn in svc.plan.functions:
            if fn.package != "image" or fn.kind == "stream":
                continue  # streaming: the local gateway writes Reply.stream itself
            env = function_environment(model_name=svc.name, kind=fn.kind, model_dir=(
                names.IMAGE_MODEL_DIR if self.containers else str(model_dir)),
                                       batch_retry_delay_s=dspec.batch.retry_delay_s)
            fspec = FunctionSpec(name=f"modelfn-{svc.name}-{fn.kind}", handler=fn.handler,
                                 env={**env, **self._aws_env()}, cwd=str(self.cwd),
                                 memory_mb=fn.memory_mb, timeout_s=fn.timeout_s, snapstart=fn.snapstart)
            # the api keeps --warm instances; the batch function as many as it may run at once
            size = self.warm if fn.kind == svc.plan.front else fn.instances
            pools[fn.kind] = FunctionPool(fspec, size=size, log=self._sink(f"{svc.name}/{fn.kind}"),
                                          **(self.containers.pool_options(svc.name) if self.containers else {}))
        return pools

    def swap(self, name: str) -> bool:
        """Serve the model's live version now (after ``modelfn promote``/``rollback``/``train``).

        New function instances start on the new version's directory; only when every one of
        them has initialized does the gateway route to them, and the old pool, handing any
        invocation it gets from then on to the new one, stops once its in-flight requests
        are done. No request is dropped or fails. A version that cannot start is not swapped
        to (the old one keeps serving; the log says why). Returns whether it swapped.
        """
        with self._swap_lock:
            svc = self.services[name]
            model_dir = self._model_dir(name)
            try:
                manifest = read_manifest(model_dir, verify=True)
            except ManifestError as exc:
                log.warning("%s: not swapping to the new live version: %s", name, exc)
                return False
            if svc.api is None or svc.batch is None or self.gateway is None or \
                    (svc.manifest is not None and manifest.version == svc.manifest.version):
                return False
            pools = self._pools(svc, model_dir)
            starters = [threading.Thread(target=pool.start) for pool in pools.values()]
            for t in starters:
                t.start()
            for t in starters:
                t.join()
            if pools["api"].failure:
                log.warning("%s: version %s failed to start, still serving %s: %s", name, manifest.version,
                            svc.manifest.version if svc.manifest else "?", pools["api"].failure)
                for pool in pools.values():
                    pool.stop()
                self._unstartable[name] = manifest.version
                return False
            old_api, old_batch = svc.api, svc.batch
            self.gateway.routes.models[name] = LambdaIntegration(pools["api"])
            svc.api, svc.batch, svc.manifest = pools["api"], pools["batch"], manifest
            self._set_streaming(svc)
            for poller in self.pollers:
                if poller.pool is old_batch:
                    poller.pool = pools["batch"]
            old_api.retire(pools["api"], drain_timeout_s=svc.deploy.api_timeout_s)
            threading.Thread(target=old_batch.retire, args=(pools["batch"],),
                             kwargs={"drain_timeout_s": svc.deploy.batch_timeout_s}, daemon=True).start()
            log.info("%s: now serving version %s", name, manifest.version)
            return True

    def _streaming(self, svc: ModelService):
        """A generative model's streaming endpoint (infra/local/streaming.py), else None."""
        if svc.manifest is None or svc.manifest.extra.get("task") != "generation":
            return None
        if svc.sagemaker is not None:  # its container streams (InvokeEndpointWithResponseStream's role)
            return None
        from infra.local.streaming import StreamingIntegration

        return StreamingIntegration(svc.name, self._model_dir(svc.name))

    def _set_streaming(self, svc: ModelService) -> None:
        assert self.gateway is not None
        stream = self._streaming(svc)
        if stream is None:
            self.gateway.routes.streams.pop(svc.name, None)
        else:
            self.gateway.routes.streams[svc.name] = stream

    def _start_late(self, svc: ModelService) -> None:
        """A model with ``training:`` and no version when the stack started serves once its
        first version is live (``modelfn train`` or retraining made it)."""
        from infra.targets import plan_model
        from infra.targets.deploy_spec import NotBuiltError, load_deploy_spec

        with self._swap_lock:
            try:
                svc.deploy = load_deploy_spec(self._catalog.get(svc.name), self.out_dir)
                svc.plan = plan_model(svc.deploy)
            except (NotBuiltError, ManifestError):
                return
            if svc.target == "sagemaker":
                return
            pools = self._pools(svc, self._model_dir(svc.name))
            for pool in pools.values():
                pool.start()
            if pools["api"].failure:
                self._unstartable[svc.name] = svc.deploy.version
                for pool in pools.values():
                    pool.stop()
                return
            svc.api, svc.batch, svc.manifest, svc.failure = pools["api"], pools["batch"], svc.deploy.manifest, None
            assert self.gateway is not None and self.aws is not None
            self.gateway.routes.models[svc.name] = LambdaIntegration(svc.api)
            self.gateway.routes.failed.pop(svc.name, None)
            self._set_streaming(svc)
            if svc.name in self.aws.queue_urls:
                self.pollers.append(QueuePoller(svc.name, self.aws.queue_urls[svc.name], svc.batch, self.aws,
                                                settings=self.aws.settings[svc.name]).start())
            log.info("%s: serving its first version %s", svc.name, svc.manifest.version)

    def _watch_versions(self) -> None:
        """Swap a model when its live version changes on disk (promote, rollback, train)."""
        while not self._stopping.wait(self.watch_interval_s):
            for svc in list(self.services.values()):
                if svc.api is None and svc.name in self._trained and svc.deploy is None and \
                        (self.out_dir / "models" / svc.name / names.MANIFEST_FILE).is_file():
                    self._start_late(svc)
                if svc.api is None or svc.manifest is None:
                    continue
                try:
                    live = json.loads((self.out_dir / "models" / svc.name / names.MANIFEST_FILE).read_text())
                except (OSError, ValueError):
                    continue  # mid-swap on disk, or removed: look again next time
                version = live.get("version")
                if version and version != svc.manifest.version and self._unstartable.get(svc.name) != version:
                    self.swap(svc.name)

    def _openai_registry(self) -> dict[str, Deployed]:
        """Every serving catalog model as the OpenAI router knows it (the deployed registry's
        fields); a model whose build or init failed is not deployed, so not listed (its V2
        routes say why it is not serving)."""
        return {svc.name: Deployed(name=svc.name, target=svc.name, auth=svc.plan.auth if svc.plan else "none",
                                   created=created_of(svc.manifest.built_at if svc.manifest else ""))
                for svc in sorted(self.services.values(), key=lambda s: s.name) if svc.failure is None}

    def _default_integration(self):
        """The shared routes (health, docs) go to the first model that serves."""
        if self.gateway is None:
            return None
        return next(iter(self.gateway.routes.models.values()), None)

    def stop(self) -> None:
        self._stopping.set()
        for r in self.retrainers.values():
            r.stop()
        if self._watcher is not None:
            self._watcher.join(10)
        for p in self.pollers:
            p.stop()
        if self.gateway is not None:
            self.gateway.stop()
        stoppers = []
        for svc in self.services.values():
            for part in (svc.api, svc.batch, svc.sagemaker):
                if part is not None:
                    stoppers.append(threading.Thread(target=part.stop))
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        if self.aws is not None:
            self.aws.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- helpers --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    @property
    def s3_endpoint(self) -> str:
        assert self.aws is not None
        return self.aws.endpoint

    def _model_dir(self, name: str) -> Path:
        """The live version's own directory when versions are kept (immutable, so a restarted
        instance of the old pool still serves the old version during a swap), else the live one."""
        live = (self.out_dir / "models" / name).resolve()
        try:
            version = json.loads((live / names.MANIFEST_FILE).read_text()).get("version")
        except (OSError, ValueError):
            return live
        kept = live / "versions" / str(version)
        return kept if (kept / names.MANIFEST_FILE).is_file() else live

    def _aws_env(self) -> dict[str, str]:
        assert self.aws is not None
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.aws.endpoint,
                "POWERTOOLS_TRACE_DISABLED": "true", "HOME": os.environ.get("HOME", "/tmp")}

    def _sink(self, prefix: str) -> processes.LogSink | None:
        if self.log_sink is None:
            return None
        outer = self.log_sink
        return lambda line: outer(f"{prefix} | {line}")

    def child_pids(self) -> list[int]:
        pids = []
        for svc in self.services.values():
            for pool in (svc.api, svc.batch):
                if pool is not None:
                    pids += [i.proc.pid for i in pool._all if i.proc is not None]
            if svc.sagemaker is not None and svc.sagemaker.proc is not None:
                pids.append(svc.sagemaker.proc.pid)
        return pids
