"""Bearer-token (JWT) verification where no API Gateway authorizer runs: the streaming function
URL of an ``auth: jwt`` model (function URLs have IAM or no auth, never a JWT authorizer).

The checks are the HTTP API JWT authorizer's, as AWS documents them, so one token works on the
model's HTTP API routes and on its streaming URL alike:

* the token comes from ``Authorization``, with or without the ``Bearer`` prefix;
* the issuer's keys come from its OpenID discovery document
  (``<issuer>/.well-known/openid-configuration`` → ``jwks_uri``); the key set is cached and
  fetched again when a token names an unknown ``kid`` (key rotation), at most once per
  ``cooldown_s`` so random ``kid``\\ s cannot make every request call the issuer;
* the header's ``alg`` must be an asymmetric algorithm (RS256/384/512, PS256/384/512,
  ES256/384/512; never ``none`` or a shared-secret HS*) and the one the key was published for;
* ``iss`` equals the configured issuer; ``aud`` (or, when the token has no ``aud``,
  ``client_id``, as Cognito access tokens carry) is one of the configured audiences; ``exp``
  is required and in the future; ``nbf`` and ``iat``, when present, are not in the future.

A refusal is the authorizer's own answer, ``401 {"message": "Unauthorized"}``, with an RFC 6750
``WWW-Authenticate`` header; the reason goes to the function's log, never the token. Nothing of
the request is looked at before the token passes, so no generation starts for a refused one.

Configuration flows catalog/CDK context (``modelfn:jwt_issuer``, ``modelfn:jwt_audience``) →
:class:`~infra.cdk.stacks.settings.StackSettings` → the streaming function's environment
(:data:`layers.names.ENV_JWT_ISSUER`, :data:`~layers.names.ENV_JWT_AUDIENCE`,
:data:`~layers.names.ENV_AUTH`) → :func:`settings_from_env`. PyJWT with ``cryptography`` does
the cryptography (``layers/requirements-generation.lock``, in generative images only: so it is
imported when a verifier is made, and every other image still imports this module); this module
only chooses its inputs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from layers import names
from layers.messages import JSON, Reply

#: what a key may sign with: asymmetric only (a public JWKS cannot carry an HS* secret)
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
#: the HTTP API JWT authorizer's refusal body
UNAUTHORIZED_BODY = json.dumps({"message": "Unauthorized"})
DISCOVERY_PATH = "/.well-known/openid-configuration"
_LOOPBACK_HOSTS = {"localhost"}


class ConfigurationError(ValueError):
    """The function's JWT settings are missing or unusable (fails the function's init)."""


class Unauthorized(Exception):
    """The request's token is refused; ``reason`` is for the log (and RFC 6750's
    ``error_description``), ``error`` the RFC 6750 code (``None``: no token was sent)."""

    def __init__(self, reason: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(reason)
        self.reason, self.error = reason, error


class IssuerUnavailable(Unauthorized):
    """The issuer's discovery document or key set could not be read: the token cannot be
    checked, so it is refused (as the HTTP API's authorizer refuses it), and the log says why."""


@dataclass(frozen=True)
class JwtSettings:
    issuer: str
    audience: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise ConfigurationError(
                f"JWT verification needs an issuer and at least one audience ({names.ENV_JWT_ISSUER}, "
                f"{names.ENV_JWT_AUDIENCE}); the CDK app sets them from the context keys "
                "modelfn:jwt_issuer and modelfn:jwt_audience")
        url = urlparse(self.issuer)
        if url.scheme != "https" and not (url.scheme == "http" and _is_loopback(url.hostname)):
            raise ConfigurationError(
                f"the JWT issuer must be an https:// URL (as API Gateway requires), got {self.issuer!r}")


def _is_loopback(host: str | None) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def settings_from_env(env: Mapping[str, str] = os.environ) -> JwtSettings | None:
    """The function's JWT settings, or None when its auth is not ``jwt``. A function marked
    ``jwt`` without an issuer or audience fails (its URL is public: never serve it unchecked)."""
    if env.get(names.ENV_AUTH, "") != "jwt":
        return None
    audience = tuple(a.strip() for a in env.get(names.ENV_JWT_AUDIENCE, "").split(",") if a.strip())
    return JwtSettings(issuer=env.get(names.ENV_JWT_ISSUER, "").strip(), audience=audience)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization`` header: ``Bearer <token>`` or the bare token."""
    value = (authorization or "").strip()
    scheme, _, rest = value.partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else value
    if not token:
        raise Unauthorized("no bearer token in the Authorization header", error=None)
    return token


class JwtVerifier:
    """Verifies tokens of one issuer for the configured audiences (one per process; keys cached).

    :param timeout_s: per fetch of the discovery document or key set; default 5 s.
    :param jwks_lifespan_s: how long a fetched key set is used; default 3600 s.
    :param cooldown_s: least time between two fetches caused by an unknown ``kid``; default 30 s.
    """

    def __init__(self, settings: JwtSettings, *, timeout_s: float = 5, jwks_lifespan_s: float = 3600,
                 cooldown_s: float = 30) -> None:
        import jwt  # PyJWT: the generative image's layer (module doc)

        self._jwt = jwt
        self.settings = settings
        self._timeout_s, self._lifespan_s, self._cooldown_s = timeout_s, jwks_lifespan_s, cooldown_s
        self._keys: Any = None  # self._jwt.PyJWKClient, made from the discovery document

    def discovery_url(self) -> str:
        return self.settings.issuer.rstrip("/") + DISCOVERY_PATH

    def _client(self) -> Any:
        """The key set's client, made from the discovery document on first use."""
        if self._keys is None:
            url = self.discovery_url()
            try:
                with urllib.request.urlopen(url, timeout=self._timeout_s) as resp:
                    doc = json.load(resp)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise IssuerUnavailable(f"cannot read the issuer's discovery document {url}: {exc}") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("jwks_uri"), str):
                raise IssuerUnavailable(f"the discovery document {url} has no jwks_uri")
            if doc.get("issuer") != self.settings.issuer:
                raise IssuerUnavailable(
                    f"the discovery document {url} names issuer {doc.get('issuer')!r}, not the "
                    f"configured {self.settings.issuer!r} (OpenID discovery requires them equal)")
            try:
                self._keys = self._jwt.PyJWKClient(doc["jwks_uri"], lifespan=self._lifespan_s,
                                             timeout=self._timeout_s, cooldown_duration=self._cooldown_s)
            except self._jwt.PyJWKClientError as exc:
                raise IssuerUnavailable(f"unusable jwks_uri in {url}: {exc}") from None
        return self._keys

    def warm(self) -> None:
        """Fetch the discovery document and key set now (at init), so the first request does
        not wait for them; a failure is raised (the caller logs it; requests retry)."""
        try:
            self._client().get_jwk_set()
        except self._jwt.PyJWKClientError as exc:
            raise IssuerUnavailable(f"cannot read the issuer's key set: {exc}") from None

    def _signing_key(self, kid: str) -> Any:
        try:
            return self._client().get_signing_key(kid)
        except self._jwt.PyJWKClientConnectionError as exc:
            raise IssuerUnavailable(f"cannot read the issuer's key set: {exc}") from None
        except self._jwt.PyJWKClientError as exc:
            raise Unauthorized(f"no key of the issuer signs kid {kid!r}: {exc}") from None
        except self._jwt.PyJWTError as exc:  # an unusable key set
            raise IssuerUnavailable(f"the issuer's key set is unusable: {exc}") from None

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, once every check passes; else :class:`Unauthorized`."""
        token = bearer_token(authorization)
        try:
            header = self._jwt.get_unverified_header(token)
        except self._jwt.PyJWTError as exc:
            raise Unauthorized(f"not a JWT: {exc}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise Unauthorized(f"alg {alg!r} is not accepted (one of {', '.join(ALGORITHMS)})")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token's header names no kid")
        key = self._signing_key(kid)
        try:
            claims = self._jwt.decode(
                token, key, algorithms=list(ALGORITHMS), issuer=self.settings.issuer,
                options={"require": ["exp", "iss"], "verify_aud": False})
        except self._jwt.PyJWTError as exc:
            raise Unauthorized(str(exc) or type(exc).__name__) from None
        self._check_audience(claims)
        return claims

    def _check_audience(self, claims: dict[str, Any]) -> None:
        """``aud`` must name a configured audience; without ``aud``, ``client_id`` must (the
        HTTP API authorizer's rule: it reads ``client_id`` only when ``aud`` is absent)."""
        aud = claims.get("aud")
        if aud is not None:
            given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and a in self.settings.audience for a in given):
                raise Unauthorized("the token's aud is not an accepted audience")
        elif claims.get("client_id") not in self.settings.audience:
            raise Unauthorized("the token has no aud and its client_id is not an accepted audience")


def unauthorized_reply(exc: Unauthorized) -> Reply:
    """The HTTP API authorizer's refusal: 401 ``{"message": "Unauthorized"}`` (RFC 6750 header)."""
    challenge = "Bearer"
    if exc.error is not None:  # the issuer's failure is the log's business, not the caller's
        reason = "the token could not be verified" if isinstance(exc, IssuerUnavailable) else exc.reason
        description = reason.replace("\\", "").replace('"', "'")[:200]
        challenge = f'Bearer error="{exc.error}", error_description="{description}"'
    return Reply(401, JSON, UNAUTHORIZED_BODY, headers={"WWW-Authenticate": challenge})
