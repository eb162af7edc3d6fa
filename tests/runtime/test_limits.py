"""Limits where AWS enforces them: Lambda's 6 MB applies to the whole invocation event, binary
bodies arrive base64-encoded (4/3 larger); events here are built the size API Gateway sends."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from layers import names
from layers.errors import PayloadTooLarge
from layers.limits import check_invocation_event, invocation_event_bytes
from tests.conftest import load_event

MB = 1024 * 1024


def binary_event(tensor_bytes: int) -> dict:
    """A V2 binary-extension request for the tiny model ([N, 4] FP32) as API Gateway sends it."""
    rows = tensor_bytes // 16
    raw = np.zeros((rows, 4), np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    event = load_event("http_infer")
    event["headers"]["content-type"] = "application/octet-stream"
    event["headers"]["inference-header-content-length"] = str(len(header))
    event["body"] = base64.b64encode(header + raw).decode()
    event["isBase64Encoded"] = True
    return event


@pytest.mark.parametrize("event", [
    load_event("http_infer"), load_event("http_infer_base64"),
    {**load_event("http_infer"), "body": json.dumps({"pad": "\"\\\n\u00e9\u2603" * 50})},
], ids=["json", "base64", "escapes and non-ascii"])
def test_the_event_is_measured_as_lambda_counts_it(event):
    assert invocation_event_bytes(event) == len(json.dumps(event, separators=(",", ":"),
                                                           ensure_ascii=False).encode("utf-8"))


def test_a_binary_body_under_6_mb_whose_event_is_over_is_refused_with_both_sizes():
    # given 4.6 MB of tensor bytes: under 6 MB decoded, 6.1 MB once base64-encoded in the event
    event = binary_event(int(4.6 * MB))
    assert len(base64.b64decode(event["body"])) < names.LAMBDA_SYNC_PAYLOAD_BYTES < invocation_event_bytes(event)
    # then
    with pytest.raises(PayloadTooLarge) as exc:
        check_invocation_event(event, names.LAMBDA_SYNC_PAYLOAD_BYTES, fix="Send fewer rows.")
    message = exc.value.message
    assert f"{invocation_event_bytes(event):,} bytes" in message
    assert f"{names.LAMBDA_SYNC_PAYLOAD_BYTES:,} bytes" in message and "base64" in message
    assert message.endswith("Send fewer rows.")


def test_a_binary_body_whose_event_fits_passes():
    event = binary_event(int(4.4 * MB))
    assert invocation_event_bytes(event) < names.LAMBDA_SYNC_PAYLOAD_BYTES
    check_invocation_event(event, names.LAMBDA_SYNC_PAYLOAD_BYTES, fix="")


def test_the_api_answers_413_for_such_an_event_before_decoding_it(monkeypatch, tiny_model_dir, lambda_context):
    from layers.http.resolver import build_app
    from layers.model import load_model

    monkeypatch.delenv(names.ENV_MAX_REQUEST_BYTES, raising=False)
    app = build_app(load_model(tiny_model_dir))
    event = binary_event(int(4.6 * MB))
    response = app.resolve(event, lambda_context)
    assert response["statusCode"] == 413
    error = json.loads(response["body"])["error"]
    assert f"{invocation_event_bytes(event):,} bytes" in error and "6,291,456 bytes" in error
