"""The stock openai client in each deployed auth mode: SigV4 (auth: iam) through modelfn's
httpx transport, checked by an independent verifier the way API Gateway's IAM authorizer
checks it; the JWT as the client's own bearer (auth: jwt)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from botocore.credentials import Credentials

from infra.client import SigV4Signer
from infra.client.openai import openai_client
from tests.client.sigv4_verifier import ACCESS_KEY, SECRET, verify

VECTOR = [0.6, 0.8]


class _Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict]] = []
    mode: ClassVar[str] = "iam"

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if not self._authorized("GET", path, query, b""):
            return self._reply(403, {"message": "Forbidden"})
        return self._reply(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 1, "owned_by": "modelfn"} for m in ("embedder", "tagger")]})

    def _authorized(self, method: str, path: str, query: str, body: bytes) -> bool:
        headers = dict(self.headers.items())
        if self.mode == "iam":
            ok, fields = verify(method, path, query, headers, body)
        else:
            ok, fields = self.headers.get("Authorization") == "Bearer the.jwt.token", {}
        self.seen.append({"path": path, "ok": ok, "fields": fields, "authorization": self.headers.get("Authorization")})
        return ok

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        if not self._authorized("POST", path, query, body):
            return self._reply(403, {"message": "Forbidden"})
        doc = json.loads(body)
        return self._reply(200, {"object": "list", "model": doc["model"],
                                 "data": [{"object": "embedding", "index": 0, "embedding": VECTOR}],
                                 "usage": {"prompt_tokens": 3, "total_tokens": 3}})


@pytest.fixture
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Api.seen.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_iam_requests_are_sigv4_signed_over_the_body_and_verify(api):
    _Api.mode = "iam"
    signer = SigV4Signer(region="us-east-1", credentials=Credentials(ACCESS_KEY, SECRET))
    client = openai_client(api + "/openai/embedder/v1", auth="iam", signer=signer, max_retries=0)
    out = client.embeddings.create(model="embedder", input=["hello", "world"], encoding_format="float")
    assert out.data[0].embedding == VECTOR
    (seen,) = _Api.seen
    assert seen["ok"] and seen["path"] == "/openai/embedder/v1/embeddings"
    assert seen["fields"]["Credential"].endswith("/us-east-1/execute-api/aws4_request")
    assert "Bearer" not in seen["authorization"]  # the client's own bearer never reaches IAM


def test_iam_with_the_wrong_secret_is_refused(api):
    import openai

    _Api.mode = "iam"
    signer = SigV4Signer(region="us-east-1", credentials=Credentials(ACCESS_KEY, "not-the-secret"))
    client = openai_client(api + "/openai/v1", auth="iam", signer=signer, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model="embedder", input="hello")


def test_jwt_is_the_clients_own_bearer(api):
    _Api.mode = "jwt"
    client = openai_client(api + "/openai/embedder/v1", auth="jwt", token="the.jwt.token", max_retries=0)
    assert client.embeddings.create(model="embedder", input="hi", encoding_format="float").usage.total_tokens == 3
    assert _Api.seen[0]["ok"]
    with pytest.raises(ValueError, match="token="):
        openai_client(api, auth="jwt")


@pytest.mark.parametrize("mode", ["iam", "jwt"])
def test_the_shared_model_list_is_a_signed_get_in_each_mode(api, mode):
    """``GET /openai/v1/models`` (no body: SigV4 over the empty payload) in each auth mode."""
    _Api.mode = mode
    signer = SigV4Signer(region="us-east-1", credentials=Credentials(ACCESS_KEY, SECRET))
    client = openai_client(api + "/openai/v1", auth=mode, signer=signer, token="the.jwt.token", max_retries=0)
    assert [m.id for m in client.models.list()] == ["embedder", "tagger"]
    (seen,) = _Api.seen
    assert seen["ok"] and seen["path"] == "/openai/v1/models"
