"""The SigV4 signer against AWS's published Signature Version 4 test suite, and against an
independent verifier for the requests ``modelfn invoke`` sends."""

from __future__ import annotations

import datetime

import botocore.auth
import pytest
from botocore.credentials import Credentials

from infra.client import NoCredentials, SigV4Signer, region_from_url
from infra.local import invoke
from tests.client.sigv4_verifier import ACCESS_KEY, SECRET, verify

SUITE_TIME = datetime.datetime(2015, 8, 30, 12, 36, 0)
SUITE_SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SUITE_TIME)


def suite_signer() -> SigV4Signer:
    return SigV4Signer(region="us-east-1", service="service", credentials=Credentials(ACCESS_KEY, SECRET))


@pytest.mark.parametrize(("case", "method", "url", "headers", "body", "signed", "signature"), [
    ("get-vanilla", "GET", "https://example.amazonaws.com/", {}, b"", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("get-vanilla-query-order-key-case", "GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1",
     {}, b"", "host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("post-vanilla", "POST", "https://example.amazonaws.com/", {}, b"", "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ("post-x-www-form-urlencoded", "POST", "https://example.amazonaws.com/",
     {"Content-Type": "application/x-www-form-urlencoded"}, b"Param1=value1", "content-type;host;x-amz-date",
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
])
def test_signatures_match_aws_published_test_suite(frozen_clock, case, method, url, headers, body, signed,
                                                   signature):
    # when
    out = suite_signer().sign(method, url, body, headers)
    # then: the Authorization header is the suite's .authz, byte for byte
    assert out["X-Amz-Date"] == "20150830T123600Z"
    assert out["Authorization"] == (f"AWS4-HMAC-SHA256 Credential={SUITE_SCOPE}, "
                                    f"SignedHeaders={signed}, Signature={signature}")


def test_stale_signature_headers_are_replaced_not_signed(frozen_clock):
    out = suite_signer().sign("GET", "https://example.amazonaws.com/", b"",
                              {"Authorization": "AWS4-HMAC-SHA256 old", "X-Amz-Date": "19990101T000000Z"})
    assert out["Authorization"].endswith("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


def test_temporary_credentials_sign_their_session_token():
    signer = SigV4Signer(region="eu-west-1", credentials=Credentials(ACCESS_KEY, SECRET, "TOKEN"))
    out = signer.sign("GET", "https://x.example.com/v2/health/live")
    assert out["X-Amz-Security-Token"] == "TOKEN"
    ok, fields = verify("GET", "/v2/health/live", "", out | {"host": "x.example.com"}, b"")
    assert ok and "x-amz-security-token" in fields["SignedHeaders"]


@pytest.mark.parametrize(("url", "region"), [
    ("https://abc123.execute-api.eu-west-1.amazonaws.com/v2", "eu-west-1"),
    ("https://abc123.execute-api.cn-north-1.amazonaws.com.cn/", "cn-north-1"),
    ("https://models.example.com/v2", None),
])
def test_region_comes_from_an_execute_api_url(url, region):
    assert region_from_url(url) == region


def test_invoke_signs_for_execute_api_in_the_urls_region_and_the_signature_verifies(monkeypatch):
    # given credentials from botocore's chain (the environment)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    host = "abc123.execute-api.us-west-2.amazonaws.com"
    body = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}'
    # when
    headers = invoke.sign("POST", f"https://{host}/v2/models/m/infer?a=1", body,
                          {"Content-Type": "application/json"})
    # then: API Gateway's check passes for exactly this request, and fails for another body
    ok, fields = verify("POST", "/v2/models/m/infer", "a=1", headers | {"Host": host}, body)
    assert ok and fields["Credential"].endswith("/us-west-2/execute-api/aws4_request")
    assert not verify("POST", "/v2/models/m/infer", "a=1", headers | {"Host": host}, body + b" ")[0]


def test_invoke_sends_unsigned_without_credentials():
    class Empty:
        def get_credentials(self):
            return None

        def get_config_variable(self, name):
            return None

    signer = SigV4Signer(session=Empty())
    with pytest.raises(NoCredentials, match="AWS_PROFILE"):
        signer.sign("GET", "https://abc.execute-api.eu-west-1.amazonaws.com/v2")
    assert invoke.sign("GET", "https://abc.execute-api.eu-west-1.amazonaws.com/v2", None,
                       {"Accept": "application/json"}, signer) == {"Accept": "application/json"}
