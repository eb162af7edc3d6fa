"""The Lambda entry points must not drag build-side code into a function's cold start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

BUILD_SIDE = {"aws_cdk", "infra", "torch", "onnx", "sklearn", "skl2onnx", "moto"}


@pytest.mark.parametrize(("module", "forbidden"), [
    ("functions.api.handler", BUILD_SIDE | {"boto3"}),  # the request path needs no AWS SDK
    ("functions.batch.handler", BUILD_SIDE),  # boto3 (S3, DynamoDB) is in the Lambda base image
    ("functions.retrain.handler", BUILD_SIDE),  # a zip function: boto3 from the Lambda runtime
])
def test_handler_import_loads_no_build_side_package(module, forbidden, tiny_model_dir):
    # given a fresh interpreter with only MODEL_DIR set, as a Lambda init has
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    env = {**os.environ, "MODEL_DIR": str(tiny_model_dir), "POWERTOOLS_TRACE_DISABLED": "true",
           "POWERTOOLS_METRICS_NAMESPACE": "modelfn", "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    # then none of the build/deploy side was imported
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert loaded.isdisjoint(forbidden), sorted(loaded & forbidden)
