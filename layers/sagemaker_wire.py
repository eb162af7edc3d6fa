"""The SageMaker custom-attributes wire format, written and parsed here only.

``InvokeEndpoint`` forwards one free-form header to the container,
``X-Amzn-SageMaker-Custom-Attributes``, and returns one (``CustomAttributes``) to the caller.
modelfn puts in it what the HTTP request would otherwise carry:

- request: ``route=<METHOD> <PATH>`` (which route of the table the container serves; no
  attribute: V2 inference of the model) and, for the binary tensor extension,
  ``;inference-header-content-length=<n>``;
- response: ``inference-header-content-length=<n>`` when the body is binary;
- ``route=POST /batch``: the asynchronous batch path (:data:`BATCH_ATTRIBUTE`).

Writers: the SageMaker proxy function, the async-batch glue and the local stack's SageMaker
integration (requests); the serving container (responses). Readers: the serving container
(requests), the proxy (responses). Standard library only: the proxy's zip carries this file.
"""

from __future__ import annotations

from typing import NamedTuple

from layers import names

#: the HTTP header (container side) of InvokeEndpoint's ``CustomAttributes``
HEADER = "X-Amzn-SageMaker-Custom-Attributes"
ROUTE = "route"
#: the binary extension's header length, as an attribute (lower-case header name)
HEADER_LENGTH = names.HEADER_LENGTH.lower()
#: the container's batch route: one S3 object through the batch job
BATCH_ATTRIBUTE = f"{ROUTE}=POST {names.SAGEMAKER_BATCH_ROUTE}"


class Attributes(NamedTuple):
    method: str | None = None
    path: str | None = None
    header_length: str | None = None


def request_attributes(method: str, path: str, header_length: str | None = None) -> str:
    """What a caller sends for one HTTP request (``route=…[;inference-header-content-length=…]``)."""
    attrs = f"{ROUTE}={method} {path}"
    if header_length is not None:
        attrs += f";{HEADER_LENGTH}={header_length}"
    return attrs


def response_attributes(header_length: str | int) -> str:
    """What the container answers for a binary body (InvokeEndpoint returns only this header)."""
    return f"{HEADER_LENGTH}={header_length}"


def parse(value: str | None) -> Attributes:
    """``route=<METHOD> <PATH>;inference-header-content-length=<n>`` → (method, path, n)."""
    method = path = header_length = None
    for part in (value or "").split(";"):
        key, _, val = part.strip().partition("=")
        key = key.strip().lower()
        if key == ROUTE:
            method, _, path = val.strip().partition(" ")
            method, path = method.strip().upper() or None, path.strip() or None
        elif key == HEADER_LENGTH:
            header_length = val.strip()
    return Attributes(method, path, header_length)


def is_batch(attrs: Attributes) -> bool:
    return (attrs.method, attrs.path) == ("POST", names.SAGEMAKER_BATCH_ROUTE)
