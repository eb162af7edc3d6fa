"""Echoes the API Gateway event back; a few magic paths misbehave on purpose."""

from __future__ import annotations

import json
import os
import time

STARTED = time.time()
PID = os.getpid()


def handler(event, context):
    path = event.get("rawPath", "")
    if path.endswith("/crash"):
        os._exit(3)  # the process dies mid-invoke, as an OOM kill or segfault would
    if path.endswith("/raise"):
        raise ValueError("raised on purpose")
    if path.endswith("/sleep"):
        time.sleep(float(event.get("queryStringParameters", {}).get("s", "1")))
    if path.endswith("/bare"):
        return {"bare": True}  # HTTP API infers a 200 JSON response from a non-proxy result
    body = {
        "event": event,
        "pid": PID,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "env": {k: os.environ.get(k) for k in ("MODEL_DIR", "AWS_LAMBDA_FUNCTION_NAME",
                                               "AWS_ENDPOINT_URL", "POWERTOOLS_SERVICE_NAME")},
    }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-echo": "1"},
        "cookies": ["a=1", "b=2"],
        "body": json.dumps(body),
    }
