"""Functions run from their built images: ``modelfn up --containers`` and the image lane.

A :class:`ContainerInstance` is an execution environment whose process is
``podman|docker run --network host <image> <handler>``: the image's own entry point (the AWS
base's ``/lambda-entrypoint.sh`` → awslambdaric) polls the same local Runtime API a host
process would (:mod:`infra.local.runtime_api`, on 127.0.0.1, reachable through the host
network), with the environment the CDK app sets. :class:`ContainerSageMakerServer` runs the
SageMaker image's entry point (``serve``) with the model directory mounted at
``/opt/ml/model`` as SageMaker unpacks it. Stopping removes the container (``rm -f``), so
nothing outlives the stack even when the engine's client is killed.
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from infra.image.engine import Engine, EngineError, find_engine
from infra.local import processes
from infra.local.function_pool import Instance
from infra.local.sagemaker import SageMakerServer
from layers import names

#: Limits for every container (Lambda gives 1,024 descriptors; this sandbox kind cannot
#: raise limits without CAP_SYS_RESOURCE, so they are set, not inherited).
ULIMITS = ("nofile=4096:4096", "nproc=4096:4096")
#: Host-side values of the host-process environment that mean nothing inside an image.
_HOST_ONLY = {"PATH", "HOME", "PYTHONPATH", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "_HANDLER",
              "LANG"}


@dataclass(frozen=True)
class ContainerRunner:
    """``run``/``rm`` with one engine that can run containers (podman or docker)."""

    engine: Engine

    @classmethod
    def find(cls, preferred: str | None = None) -> ContainerRunner:
        engine = find_engine(preferred)
        if engine.name == "buildah":
            raise EngineError("buildah builds images but does not run them; install podman "
                              "(`apt-get install podman runc`) or Docker for --containers")
        return cls(engine)

    def run_argv(self, *, image: str, name: str, env: Mapping[str, str],
                 args: Sequence[str] = (), entrypoint: str | None = None,
                 volumes: Sequence[tuple[str, str]] = ()) -> list[str]:
        argv = [self.engine.executable, "run", "--rm", "--name", name, "--network", "host"]
        for limit in ULIMITS:
            argv += ["--ulimit", limit]
        for host, inside in volumes:
            argv += ["-v", f"{host}:{inside}:ro"]
        for k, v in sorted(env.items()):
            argv += ["-e", f"{k}={v}"]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        return [*argv, image, *args]

    def remove(self, name: str) -> None:
        subprocess.run([self.engine.executable, "rm", "-f", name], capture_output=True,
                       timeout=60, check=False)


def container_env(env: Mapping[str, str]) -> dict[str, str]:
    """The host-process environment minus what only makes sense on the host."""
    return {k: v for k, v in env.items() if k not in _HOST_ONLY}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class ContainerInstance(Instance):
    """One Lambda execution environment run from ``image`` (CMD = the spec's handler)."""

    def __init__(self, spec, index, log, *, runner: ContainerRunner, image: str,
                 volumes: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(spec, index, log)
        self.runner, self.image, self.volumes = runner, image, tuple(volumes)
        self.container: str | None = None

    def _spawn(self, env: dict[str, str]):
        self.container = _name(f"{self.spec.name}-{self.index}")
        argv = self.runner.run_argv(image=self.image, name=self.container,
                                    env=container_env(env), args=[self.spec.handler],
                                    volumes=self.volumes)
        return processes.spawn(argv, env=os.environ, cwd=self.spec.cwd, log=self._log)

    def stop(self) -> None:
        super().stop()
        if self.container is not None:
            self.runner.remove(self.container)


def instance_factory(*, runner: ContainerRunner, image: str,
                     volumes: Sequence[tuple[str, str]] = ()):
    """A :class:`~infra.local.function_pool.FunctionPool` ``instance_factory`` for ``image``."""
    return functools.partial(ContainerInstance, runner=runner, image=image, volumes=volumes)


class ContainerSageMakerServer(SageMakerServer):
    """The SageMaker serving image, started as SageMaker starts it (``serve``), the model
    directory mounted read-only at ``/opt/ml/model``; it listens on a free port (``serve``
    takes ``--port``; SageMaker's own 8080 may be taken on a shared host)."""

    def __init__(self, *args, runner: ContainerRunner, image: str, model_dir: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.runner, self.image, self.model_dir = runner, image, model_dir
        self.container: str | None = None

    def _spawn(self, env: dict[str, str]):
        self.container = _name(f"modelfn-{self.name}-sagemaker")
        inside = {**container_env(env), names.ENV_MODEL_DIR: names.SAGEMAKER_MODEL_DIR}
        argv = self.runner.run_argv(
            image=self.image, name=self.container, env=inside,
            args=["serve", "--host", "127.0.0.1", "--port", str(self.port)],
            volumes=[(self.model_dir, names.SAGEMAKER_MODEL_DIR)])
        return processes.spawn(argv, env=os.environ, cwd=self.cwd, log=self._remember)

    def stop(self) -> None:
        super().stop()
        if self.container is not None:
            self.runner.remove(self.container)


@dataclass
class ImageSet:
    """What ``modelfn up --containers`` hands the local stack: builds each model's image
    (exactly as ``modelfn image`` does) and runs its functions from it."""

    runner: ContainerRunner
    python_base: str | None = None
    log: processes.LogSink | None = None
    tags: dict[str, str] | None = None

    def prepare(self, specs: Sequence, out_dir) -> dict[str, str]:
        """Build the images of ``specs`` (DeploySpecs); return ``{model: why}`` for failures."""
        from pathlib import Path

        from infra.image.build import build_one, plan

        self.tags, failed = {}, {}
        for target in plan(specs, stage_dir=(Path(out_dir) / "cdk-stage").resolve(),
                           python_base=self.python_base):
            try:
                build_one(self.runner.engine, target)
                self.tags[target.model] = target.tag
            except EngineError as exc:
                failed[target.model] = str(exc).splitlines()[0]
        return failed

    def pool_options(self, model: str) -> dict:
        assert self.tags is not None, "prepare() first"
        return {"instance_factory": instance_factory(runner=self.runner, image=self.tags[model])}

    def sagemaker_server(self, model: str, model_dir) -> functools.partial:
        assert self.tags is not None, "prepare() first"
        return functools.partial(ContainerSageMakerServer, runner=self.runner,
                                 image=self.tags[model], model_dir=str(model_dir))
