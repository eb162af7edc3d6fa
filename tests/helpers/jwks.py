"""A token issuer for tests: OpenID discovery + JWKS served on 127.0.0.1 (a free port), with an
RSA and a P-256 key, and tokens signed by PyJWT as an identity provider signs them."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

AUDIENCE = "modelfn-client"


def _public_jwk(key: Any, kid: str, alg: str) -> dict:
    doc = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
    return {**doc, "kid": kid, "alg": alg, "use": "sig"}


class Issuer:
    """``url`` is the issuer; ``keys`` kid → (private key, alg) of the published set;
    ``fetches`` counts requests per path. Use as a context manager (the server stops)."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[Any, str]] = {
            "rsa-1": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
            "ec-1": (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        }
        self.fetches: dict[str, int] = {}
        self.up = True
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches[self.path] = issuer.fetches.get(self.path, 0) + 1
                docs = {"/.well-known/openid-configuration": {"issuer": issuer.url,
                                                              "jwks_uri": f"{issuer.url}/jwks.json"},
                        "/jwks.json": {"keys": [_public_jwk(k, kid, alg)
                                                for kid, (k, alg) in issuer.keys.items()]}}
                if not issuer.up or self.path not in docs:
                    self.send_error(503 if not issuer.up else 404)
                    return
                body = json.dumps(docs[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __enter__(self) -> Issuer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def rotate(self, kid: str) -> None:
        """Publish a new RSA key under ``kid`` (as a provider rotates its signing key)."""
        self.keys[kid] = (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")

    def token(self, *, kid: str = "rsa-1", key: Any = None, alg: str | None = None,
              headers: dict | None = None, **claims: Any) -> str:
        """A token signed with ``kid``'s key (or ``key``); claims default to a valid access
        token for :data:`AUDIENCE` that expires in 5 minutes (``None`` drops a claim)."""
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        signing_key, kid_alg = self.keys[kid] if key is None else (key, alg)
        return jwt.encode(body, signing_key, algorithm=alg or kid_alg, headers={"kid": kid, **(headers or {})})
