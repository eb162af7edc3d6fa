"""A client of the deployed control API (training and versions over HTTPS), signed with SigV4.

The control routes (:mod:`layers.protocols.control`) are IAM-authorized on AWS whatever the
model's inference ``auth``, so every request is signed (:class:`~infra.client.sigv4.SigV4Signer`,
botocore's credential chain). ``modelfn versions|promote|rollback --deployed`` go through
this client; so can a teammate's script::

    from infra.client.control import ControlClient
    api = ControlClient("https://<api-id>.execute-api.<region>.amazonaws.com")
    api.versions("digits-mlp")["live"]
    api.promote("digits-mlp", "3f2a9c81d0e4")

A non-2xx answer raises :class:`ControlError` with the server's ``{"error"}`` message and status.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from infra.client.sigv4 import SigV4Signer


class ControlError(RuntimeError):
    """The control API refused or failed a request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlClient:
    """``base_url``: the HTTP API's URL (the stack's ``ApiUrl`` output); ``signer``: default
    :class:`SigV4Signer` (the region comes from an ``execute-api`` URL)."""

    def __init__(self, base_url: str, *, signer: SigV4Signer | None = None, timeout_s: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer or SigV4Signer()
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, doc: Any = None, query: dict[str, Any] | None = None) -> Any:
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        body = json.dumps(doc).encode() if doc is not None else b""
        headers = self.signer.sign(method, url, body, {"Accept": "application/json",
                                                       **({"Content-Type": "application/json"} if body else {})})
        req = urllib.request.Request(url, data=body or None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raise ControlError(err.code, _message(err.code, err.read(), method, url)) from None
        except urllib.error.URLError as err:
            raise ControlError(0, f"could not reach {self.base_url} ({err.reason})") from None

    @staticmethod
    def _model(name: str) -> str:
        return f"/v2/models/{quote(name, safe='')}"

    def versions(self, model: str) -> dict[str, Any]:
        return self.request("GET", f"{self._model(model)}/versions")

    def promote(self, model: str, version: str) -> dict[str, Any]:
        return self.request("POST", f"{self._model(model)}/versions/{quote(version, safe='')}/promote")

    def rollback(self, model: str) -> dict[str, Any]:
        return self.request("POST", f"{self._model(model)}/rollback")

    def train(self, model: str, hyperparameters: dict[str, Any] | None = None,
              data: str | None = None) -> dict[str, Any]:
        doc = {"hyperparameters": hyperparameters or {}, **({"data": data} if data else {})}
        return self.request("POST", f"{self._model(model)}/train", doc)

    def run(self, model: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"{self._model(model)}/train/{quote(run_id, safe='')}")


def _message(status: int, body: bytes, method: str, url: str) -> str:
    try:
        error = json.loads(body).get("error") or json.loads(body).get("message")
    except (ValueError, AttributeError):
        error = None
    text = error or body.decode(errors="replace")[:300] or "no body"
    if status == 404 and error == "Not Found":  # API Gateway's own 404: no such route on the API
        text += (" (the API has no control route there: deploy the model's stack again with "
                 "`modelfn deploy NAME` to add its control routes, or check --stack/--url)")
    if status in (401, 403):
        text += (" (the control routes are IAM-authorized: sign with credentials of a principal "
                 "allowed execute-api:Invoke on them: environment, AWS_PROFILE or `aws sso login`)")
    return f"{method} {url} answered {status}: {text}"
