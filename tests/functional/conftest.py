"""Fixtures for the API handler and the SageMaker server: a fresh handler module per test.

The handler module loads its model at import (as on Lambda), so each test points MODEL_DIR
at its own model and imports the module anew; nothing leaks between tests.
"""

from __future__ import annotations

import copy
import importlib
import sys

import pytest

from layers import names
from layers.model import reset_model

HANDLER_MODULE = "functions.api.handler"


def import_handler():
    """Import the API handler module afresh (its init runs again, as in a new Lambda sandbox)."""
    from aws_lambda_powertools.metrics.provider.cold_start import reset_cold_start_flag

    from layers import observability

    reset_model()
    reset_cold_start_flag()
    observability.reset()
    sys.modules.pop(HANDLER_MODULE, None)
    return importlib.import_module(HANDLER_MODULE)


@pytest.fixture
def api(monkeypatch, tiny_model_dir):
    """The handler module serving the ``tiny`` model (input x [-1, 4] FP32 → probs [-1, 3])."""
    monkeypatch.setenv(names.ENV_MODEL_DIR, str(tiny_model_dir))
    monkeypatch.delenv(names.ENV_MAX_REQUEST_BYTES, raising=False)
    module = import_handler()
    yield module
    sys.modules.pop(HANDLER_MODULE, None)
    reset_model()


def route(event: dict, method: str, path: str) -> dict:
    """A copy of a recorded event sent to another method/path."""
    e = copy.deepcopy(event)
    e["rawPath"] = e["requestContext"]["http"]["path"] = path
    e["requestContext"]["http"]["method"] = method
    return e
