"""The SageMaker proxy's logic: HTTP API (payload 2.0) → ``InvokeEndpoint``, for models served on SageMaker.

Why a proxy function: HTTP APIs have no SageMaker service integration, so a Lambda forwards
each V2 request. It stays thin: the request body goes through untouched and the custom
attribute ``route=<METHOD> <PATH>`` (plus ``inference-header-content-length=<n>`` for the
binary tensor extension) tells functions/sagemaker/serve.py which V2 route to run, so the
endpoint answers every route exactly as a Lambda-hosted model does.

Errors are mapped honestly: the container's own 4xx/5xx (SageMaker's ``ModelError``) pass
through with their status and ``{"error": ...}`` body; a request over SageMaker's 6 MB
limit is a 413; an endpoint that is still creating/updating or throttled is a 503/429;
only a failure of the endpoint itself is a 502. Never a stack trace.

Limits where AWS enforces them: the invocation event (base64 body included) against Lambda's
6 MB (:mod:`layers.limits`, shared with the API function), then the decoded body against
SageMaker's 6 MB. Time: the client's connect + read timeouts, over every attempt, fit inside
the function's own timeout (``MODELFN_PROXY_TIMEOUT_S``, set by the construct), and a read
timeout is not retried: a second ``InvokeEndpoint`` would queue a second inference behind the
first, which is still running, and could not finish in time anyway.

The Lambda entry point (``functions/proxy/handler.py``) wires this with the shared
observability; this module needs only boto3 and the standard library.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from layers import names, sagemaker_wire
from layers.errors import PayloadTooLarge
from layers.limits import check_invocation_event

CONNECT_TIMEOUT_S = 2
#: kept back from the function timeout for building the answer and returning it
TIMEOUT_MARGIN_S = 2
ATTEMPTS = 1

_CLIENT = None


def function_timeout_s() -> int:
    raw = os.environ.get(names.ENV_PROXY_TIMEOUT_S, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else names.PROXY_TIMEOUT_S


def client_timeouts() -> tuple[int, int, int]:
    """(connect s, read s, attempts): ``attempts × (connect + read)`` < the function timeout."""
    read = max(1, function_timeout_s() - CONNECT_TIMEOUT_S - TIMEOUT_MARGIN_S)
    return CONNECT_TIMEOUT_S, read, ATTEMPTS


def client():
    """The sagemaker-runtime client, created once per process (lazily, for tests)."""
    global _CLIENT
    if _CLIENT is None:
        connect, read, attempts = client_timeouts()
        _CLIENT = boto3.client(
            "sagemaker-runtime",
            config=Config(read_timeout=read, connect_timeout=connect,
                          retries={"total_max_attempts": attempts, "mode": "standard"}),
        )
    return _CLIENT


def _response(status: int, body: bytes | str, content_type: str = "application/json") -> dict:
    if isinstance(body, bytes):
        try:
            return {"statusCode": status, "headers": {"content-type": content_type},
                    "body": body.decode("utf-8"), "isBase64Encoded": False}
        except UnicodeDecodeError:
            return {"statusCode": status, "headers": {"content-type": content_type},
                    "body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True}
    return {"statusCode": status, "headers": {"content-type": content_type}, "body": body,
            "isBase64Encoded": False}


def _error(status: int, message: str) -> dict:
    return _response(status, json.dumps({"error": message}))


def _header(event: dict, name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return value
    return None


def custom_attributes(method: str, path: str, header_length: str | None) -> str:
    """The ``X-Amzn-SageMaker-Custom-Attributes`` value serve.py routes on."""
    return sagemaker_wire.request_attributes(method, path, header_length)


def _body(event: dict) -> bytes:
    raw = event.get("body") or ""
    return base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("utf-8")


def _model_error(exc: ClientError) -> dict:
    """The container answered with a non-2xx: pass its status and body through."""
    err = exc.response.get("Error", {})
    status = int(exc.response.get("OriginalStatusCode") or 502)
    original = exc.response.get("OriginalMessage") or err.get("Message") or ""
    try:
        json.loads(original)
        return _response(status, original)
    except ValueError:
        return _error(status, original or "the model server returned an error without a body")


def forward(event: dict, context: Any = None) -> dict:
    """One HTTP API 2.0 event → the endpoint's answer as a Lambda response (never raises)."""
    endpoint = os.environ.get(names.ENV_SAGEMAKER_ENDPOINT)
    if not endpoint:
        return _error(502, f"this proxy is misconfigured: {names.ENV_SAGEMAKER_ENDPOINT} is not "
                           "set; redeploy the stack")
    http = (event.get("requestContext") or {}).get("http") or {}
    method = http.get("method") or "GET"
    path = event.get("rawPath") or http.get("path") or "/"
    try:
        check_invocation_event(event, names.LAMBDA_SYNC_PAYLOAD_BYTES, fix=(
            "Send fewer rows per request, or use batch inference through S3."))
    except PayloadTooLarge as exc:
        return _error(413, exc.message)
    body = _body(event)
    if len(body) > names.SAGEMAKER_PAYLOAD_BYTES:
        return _error(413, f"the request body is {len(body)} bytes; models served on SageMaker "
                           f"accept at most {names.SAGEMAKER_PAYLOAD_BYTES} bytes. Send fewer rows "
                           "per request, or use batch inference through S3")
    content_type = _header(event, "content-type") or "application/json"
    try:
        resp = client().invoke_endpoint(
            EndpointName=endpoint,
            Body=body or b"{}",
            ContentType=content_type,
            Accept=_header(event, "accept") or "application/json",
            CustomAttributes=custom_attributes(
                method, path, _header(event, sagemaker_wire.HEADER_LENGTH)),
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code == "ModelError":
            return _model_error(exc)
        if code in ("ModelNotReadyException", "ServiceUnavailable"):
            return _error(503, f"the model's SageMaker endpoint is not ready ({message}); retry "
                               "in a minute")
        if code == "ThrottlingException":
            return _error(429, "the model's SageMaker endpoint is throttling requests; retry "
                               "with backoff")
        if code == "ValidationError" and "not found" in message.lower():
            return _error(503, f"the model's SageMaker endpoint {endpoint} does not exist (yet); "
                               "wait for the stack deployment to finish")
        if code == "ValidationError":
            return _error(400, f"SageMaker rejected the request: {message}")
        return _error(502, f"the model's SageMaker endpoint failed ({code}: {message})")
    except BotoCoreError as exc:
        return _error(502, f"could not reach the model's SageMaker endpoint ({exc}); retry")
    payload = resp["Body"].read()
    headers_len = sagemaker_wire.parse(resp.get("CustomAttributes")).header_length
    out = _response(200, payload, resp.get("ContentType") or "application/json")
    if headers_len is not None:
        out["headers"][sagemaker_wire.HEADER_LENGTH] = headers_len
    return out
