"""Fixtures for the end-to-end tests: function pools behind the local gateway, and the whole
local stack on a catalog of tiny models, all on free ports and always stopped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from infra.local.function_pool import FunctionPool, FunctionSpec
from infra.local.gateway import Gateway, LambdaIntegration, Routes

REPO_ROOT = Path(__file__).resolve().parents[2]
ECHO_HANDLER = "tests.e2e.handlers.echo.handler"
INIT_FAIL_HANDLER = "tests.e2e.handlers.init_fail.handler"

pytestmark = pytest.mark.e2e


def descendants() -> set[int]:
    """Live (non-zombie) descendants of this test process."""
    out = set()
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def pool_for(handler: str, name: str, *, size: int = 1, timeout_s: int = 30) -> FunctionPool:
    spec = FunctionSpec(name=name, handler=handler, env={"MODEL_DIR": "/nonexistent"},
                        cwd=str(REPO_ROOT), timeout_s=timeout_s)
    return FunctionPool(spec, size=size)


@pytest.fixture(scope="module")
def echo_gateway() -> Iterator[Gateway]:
    """``echo`` (2 warm instances) and ``broken`` (init fails) behind a gateway whose
    integration timeout is 2 s, so the API Gateway timeout path runs quickly."""
    echo = pool_for(ECHO_HANDLER, "modelfn-echo-api", size=2, timeout_s=10)
    broken = pool_for(INIT_FAIL_HANDLER, "modelfn-broken-api")
    gw = None
    try:
        echo.start()
        broken.start()
        models = {"echo": LambdaIntegration(echo), "broken": LambdaIntegration(broken)}
        routes = Routes(models=models, default=lambda: models["echo"])
        gw = Gateway(routes, port=0, integration_timeout_s=2.0).start()
        yield gw
    finally:
        if gw is not None:
            gw.stop()
        echo.stop()
        broken.stop()


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> Iterator:
    """The whole local stack on a catalog of tiny models, built in tmp, on free ports.

    Package scope: it is stopped as soon as the last test here is done, so its moto server
    (in-process, sharing moto's backends) never overlaps other packages' moto mocks."""
    import logging

    from infra.local.stack import LocalStack
    from tests.e2e.tiny_models import make_catalog

    root = tmp_path_factory.mktemp("stack")
    fn_log = logging.getLogger("modelfn.test.functions")
    before = descendants()
    s = LocalStack(catalog_path=make_catalog(root, broken=True), out_dir=root / "build", port=0, s3_port=0,
                   warm=2, log_sink=fn_log.info, integration_timeout_s=30)
    try:
        s.start()
        yield s
    finally:
        s.stop()
    left = descendants() - before
    assert not left, f"processes left after stop: {left}"
