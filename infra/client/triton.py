"""A tritonclient plugin that signs every request with SigV4, for ``auth: iam`` models.

::

    import tritonclient.http as triton
    from infra.client import SigV4Plugin

    client = triton.InferenceServerClient("abc123.execute-api.eu-west-1.amazonaws.com", ssl=True)
    SigV4Plugin().register(client)      # botocore's credential chain; region from the URL

Why ``register(client)`` and not only ``client.register_plugin(plugin)``: a tritonclient
plugin is called with the request's headers only, but SigV4 signs the method, the path and
query and the sha256 of the body as well. So ``register`` registers the plugin (which drops
any stale signature headers the caller passed) and routes the client's HTTP transport
through the signer, which signs each request, body included, as it is sent. A plugin
registered the plain way refuses to run rather than send unsigned requests.
"""

from __future__ import annotations

from typing import Any

from tritonclient.http import InferenceServerClient, InferenceServerClientPlugin

from infra.client.sigv4 import AUTH_HEADERS, SigV4Signer


class SigV4Plugin(InferenceServerClientPlugin):
    """Signs the requests of a ``tritonclient.http.InferenceServerClient`` (SigV4, ``execute-api``)."""

    def __init__(self, signer: SigV4Signer | None = None, **signer_options: Any) -> None:
        self.signer = signer or SigV4Signer(**signer_options)
        self._registered = False

    def register(self, client: InferenceServerClient) -> InferenceServerClient:
        """Sign every request ``client`` sends from now on; returns ``client``."""
        if not isinstance(client, InferenceServerClient):
            raise TypeError(f"SigV4Plugin signs tritonclient.http.InferenceServerClient, not "
                            f"{type(client).__name__} (the gRPC client cannot reach API Gateway)")
        url = client._parsed_url
        port = "" if url.port in (80, 443) else f":{url.port}"
        client._client_stub = _SigningTransport(client._client_stub, self.signer,
                                                f"{url.scheme}://{url.host}{port}", f"{url.host}{port}")
        self._registered = True
        client.register_plugin(self)
        return client

    def __call__(self, request) -> None:
        if not self._registered:
            raise RuntimeError("register SigV4Plugin with plugin.register(client), not "
                               "client.register_plugin(plugin): tritonclient plugins see only the "
                               "headers, and SigV4 also signs the method, path and body")
        for name in [h for h in request.headers if h.lower() in AUTH_HEADERS]:
            del request.headers[name]


class _SigningTransport:
    """tritonclient's geventhttpclient ``HTTPClient``, signing each GET/POST as it is sent."""

    def __init__(self, inner: Any, signer: SigV4Signer, origin: str, host: str) -> None:
        self._inner, self._signer, self._origin, self._host = inner, signer, origin, host

    def _headers(self, method: str, request_uri: str, body: bytes, headers) -> dict[str, str]:
        # the Host header is sent as signed (geventhttpclient keeps one it is given)
        given = {"Host": self._host, **dict(headers or {})}
        return self._signer.sign(method, self._origin + request_uri, body, given)

    def get(self, request_uri: str, headers=None):
        return self._inner.get(request_uri, headers=self._headers("GET", request_uri, b"", headers))

    def post(self, request_uri: str, body: bytes | str = b"", headers=None):
        data = body.encode() if isinstance(body, str) else bytes(body or b"")
        return self._inner.post(request_uri, body=data,
                                headers=self._headers("POST", request_uri, data, headers))

    def __getattr__(self, name: str) -> Any:  # close(), etc.
        return getattr(self._inner, name)
