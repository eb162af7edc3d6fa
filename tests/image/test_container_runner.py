"""How a function is started from its image: the engine's ``run`` line and the environment."""

from __future__ import annotations

import pytest

from infra.image.engine import Engine, EngineError
from infra.local import containers
from infra.local.containers import ContainerRunner, container_env

pytestmark = pytest.mark.image


def test_run_line_uses_the_host_network_fixed_ulimits_and_read_only_mounts() -> None:
    runner = ContainerRunner(Engine("podman", "/usr/bin/podman"))
    argv = runner.run_argv(image="modelfn-m:1", name="c1", env={"B": "2", "A": "1"},
                           args=["functions.batch.handler.handler"], volumes=[("/h", "/var/task/model")])
    assert argv[:6] == ["/usr/bin/podman", "run", "--rm", "--name", "c1", "--network"]
    assert argv[argv.index("--network") + 1] == "host"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--ulimit"] == list(containers.ULIMITS)
    assert "/h:/var/task/model:ro" in argv
    # the image, then the CMD override (the handler) last
    assert argv[-2:] == ["modelfn-m:1", "functions.batch.handler.handler"]
    assert argv.index("A=1") < argv.index("B=2") < argv.index("modelfn-m:1")


def test_host_paths_stay_on_the_host() -> None:
    env = {"PATH": "/usr/bin", "PYTHONPATH": "/work", "LAMBDA_TASK_ROOT": "/work", "HOME": "/root",
           "MODEL_DIR": "/var/task/model", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:1"}
    assert container_env(env) == {"MODEL_DIR": "/var/task/model",
                                  "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:1"}


def test_buildah_cannot_run_functions(monkeypatch) -> None:
    monkeypatch.setattr(containers, "find_engine", lambda preferred=None: Engine("buildah", "buildah"))
    with pytest.raises(EngineError, match="install podman"):
        ContainerRunner.find("buildah")
