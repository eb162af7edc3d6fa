"""The stock ``openai`` client against a deployed modelfn API, in each auth mode.

* ``auth: none`` and the local stack: ``OpenAI(base_url=..., api_key="unused")``.
* ``auth: jwt``: the client's own ``Authorization: Bearer <api_key>`` is what the HTTP API's
  JWT authorizer reads, so pass the token as ``api_key`` (:func:`openai_client` does).
* ``auth: iam``: requests need a SigV4 signature over method, URL, headers and body;
  :class:`SigV4Transport` is an httpx transport that signs each request as it is sent (with
  :class:`~infra.client.sigv4.SigV4Signer`: botocore's credential chain, the region from the
  ``execute-api`` URL), replacing the client's bearer header.

::

    from infra.client.openai import openai_client
    client = openai_client("https://abc.execute-api.eu-west-1.amazonaws.com/openai/embedder/v1")
    client.embeddings.create(model="embedder", input=["hello"])
"""

from __future__ import annotations

from typing import Any

from infra.client.sigv4 import SigV4Signer

try:  # openai >= 3 ships on httpx2; older releases on httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx  # type: ignore[no-redef]


class SigV4Transport(httpx.BaseTransport):
    """Signs every request for ``execute-api`` before ``inner`` (default: a plain HTTP transport) sends it."""

    def __init__(self, signer: SigV4Signer | None = None, inner: Any | None = None) -> None:
        self.signer = signer or SigV4Signer()
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request):
        body = request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "content-length")}
        signed = self.signer.sign(request.method, str(request.url), body, headers)
        for name in [k for k in request.headers if k.lower() == "authorization"]:
            del request.headers[name]
        for name, value in signed.items():
            request.headers[name] = value
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def openai_client(base_url: str, *, auth: str = "iam", token: str | None = None,
                  signer: SigV4Signer | None = None, **kwargs: Any):
    """An ``openai.OpenAI`` for a modelfn API route (``…/openai/<model>/v1`` or ``…/openai/v1``)
    in the model's ``auth`` mode: ``iam`` (SigV4), ``jwt`` (``token`` as bearer) or ``none``."""
    from openai import OpenAI

    if auth == "jwt":
        if not token:
            raise ValueError("auth: jwt needs token= (a JWT your issuer signed for the API's audience)")
        return OpenAI(base_url=base_url, api_key=token, **kwargs)
    if auth == "iam":
        client = httpx.Client(transport=SigV4Transport(signer), timeout=kwargs.pop("timeout", 60))
        return OpenAI(base_url=base_url, api_key="sigv4", http_client=client, **kwargs)
    if auth == "none":
        return OpenAI(base_url=base_url, api_key="unused", **kwargs)
    raise ValueError(f"auth {auth!r} is not one of iam, jwt, none")
