"""``modelfn invoke`` against a deployed stack: the URL from the stack outputs, SigV4 signing.

botocore's Stubber stands in for CloudFormation (not moto's in-process mock: it would share,
and reset, the backends of a local stack's moto server running in the same test process).
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from infra.local import invoke
from layers import names

pytestmark = pytest.mark.e2e
URL = "https://abc123.execute-api.eu-west-1.amazonaws.com"


@pytest.fixture
def aws_env(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
                 "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)


def _stack(outputs: list[dict]) -> dict:
    return {"Stacks": [{"StackName": "ModelfnStack", "CreationTime": "2026-11-22T00:00:00Z",
                        "StackStatus": "CREATE_COMPLETE", "Outputs": outputs}]}


def test_api_url_comes_from_the_stack_output(aws_env):
    cfn = boto3.client("cloudformation")
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", _stack([{"OutputKey": "Other", "OutputValue": "x"},
                                                      {"OutputKey": names.OUTPUT_API_URL, "OutputValue": URL}]),
                          {"StackName": "ModelfnStack"})
        assert invoke.stack_api_url("ModelfnStack", cfn) == URL


def test_a_stack_without_the_output_is_named(aws_env):
    cfn = boto3.client("cloudformation")
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", _stack([]), {"StackName": "ModelfnStack"})
        with pytest.raises(LookupError, match=names.OUTPUT_API_URL):
            invoke.stack_api_url("ModelfnStack", cfn)


def test_no_url_anywhere_is_a_clear_error(monkeypatch):
    def no_stack(stack, client=None):
        raise RuntimeError(f"Stack with id {stack} does not exist")

    monkeypatch.setattr(invoke, "_local_is_up", lambda url: False)
    monkeypatch.setattr(invoke, "stack_api_url", no_stack)
    with pytest.raises(RuntimeError, match="--url") as err:
        invoke.resolve_url(None, "ModelfnStack")
    assert "make up" in str(err.value) and "ModelfnStack" in str(err.value)
