"""The one builder of API Gateway HTTP API (payload format 2.0) events: HTTP request → event.

The event carries the fields API Gateway sends (lower-cased headers with duplicates joined by
commas, cookies split out, query parameters, ``requestContext.http``, ``stage: $default``,
``time``/``timeEpoch``, base64 bodies for binary content). The local gateway sends these to
the functions (``infra/local/http_api_events.py`` reads their results back); the SageMaker
container measures a request as Lambda would receive it with one (:mod:`.sagemaker`).
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl

API_ID = "local"
ACCOUNT_ID = "123456789012"

# content types API Gateway passes as text; anything else is base64-encoded
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded", "application/yaml")


@dataclass
class HttpRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"
    host: str = "127.0.0.1"
    port: int = 3000

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def request_id() -> str:
    """An id shaped like API Gateway's (``apigw-requestid``, ``requestContext.requestId``)."""
    return base64.b32encode(uuid.uuid4().bytes).decode()[:16].rstrip("=")


def is_text(content_type: str | None) -> bool:
    ct = (content_type or "").split(";")[0].strip().lower()
    return ct.startswith(_TEXT_TYPES) or ct.endswith(("+json", "+xml"))


def to_event(req: HttpRequest, *, route_key: str, path_parameters: dict[str, str] | None) -> dict:
    """The HTTP API 2.0 event API Gateway would send to the function for ``req``."""
    now = time.time()
    rid = request_id()
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for k, v in req.headers:
        key = k.lower()
        if key == "cookie":
            cookies += [c.strip() for c in v.split(";") if c.strip()]
            continue
        headers[key] = f"{headers[key]},{v}" if key in headers else v
    headers.setdefault("x-forwarded-for", req.source_ip)
    headers.setdefault("x-forwarded-port", str(req.port))
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]}")
    headers["content-length"] = str(len(req.body))
    event: dict = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.path,
        "rawQueryString": req.query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": headers.get("host", f"{req.host}:{req.port}"),
            "domainPrefix": headers.get("host", req.host).split(".")[0],
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": "HTTP/1.1",
                "sourceIp": req.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": rid,
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if req.query:
        params: dict[str, str] = {}
        for k, v in parse_qsl(req.query, keep_blank_values=True):
            params[k] = f"{params[k]},{v}" if k in params else v
        event["queryStringParameters"] = params
    if path_parameters:
        event["pathParameters"] = path_parameters
    if req.body:
        if is_text(headers.get("content-type")):
            try:
                event["body"] = req.body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"], event["isBase64Encoded"] = base64.b64encode(req.body).decode(), True
        else:
            event["body"], event["isBase64Encoded"] = base64.b64encode(req.body).decode(), True
    return event
