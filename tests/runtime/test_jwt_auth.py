"""Bearer-token verification of the streaming function URL (layers/http/jwt_auth.py) against a
local issuer (OpenID discovery + JWKS on 127.0.0.1): the HTTP API JWT authorizer's checks."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from layers import names
from layers.http import jwt_auth
from layers.http.jwt_auth import IssuerUnavailable, JwtSettings, JwtVerifier, Unauthorized
from tests.helpers.jwks import AUDIENCE, Issuer


@pytest.fixture(scope="module")
def issuer():
    with Issuer() as issuer:
        yield issuer


@pytest.fixture(scope="module")
def verifier(issuer) -> JwtVerifier:
    return JwtVerifier(JwtSettings(issuer=issuer.url, audience=("other-client", AUDIENCE)))


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_a_valid_rs256_or_es256_token_passes_with_or_without_the_bearer_prefix(issuer, verifier, kid) -> None:
    token = issuer.token(kid=kid)
    assert verifier.verify(f"Bearer {token}")["sub"] == "user-1"
    assert verifier.verify(token)["sub"] == "user-1"  # the authorizer accepts the bare token too


def test_keys_are_fetched_once_and_cached(issuer) -> None:
    fresh = JwtVerifier(JwtSettings(issuer=issuer.url, audience=(AUDIENCE,)))
    before = dict(issuer.fetches)
    for _ in range(3):
        fresh.verify(issuer.token())
    assert issuer.fetches["/jwks.json"] - before.get("/jwks.json", 0) == 1
    assert issuer.fetches["/.well-known/openid-configuration"] - before["/.well-known/openid-configuration"] == 1


#: claims relative to the moment the test runs (a suite can run a test long after collection)
REFUSED = {
    "expired": lambda now: dict(exp=now - 60, iat=now - 400),
    "not yet valid (nbf)": lambda now: dict(nbf=now + 600),
    "issued in the future (iat)": lambda now: dict(iat=now + 600),
    "no exp": lambda now: dict(exp=None),
    "wrong audience": lambda now: dict(aud="someone-else"),
    "wrong issuer": lambda now: dict(iss="https://evil.example.com"),
}


@pytest.mark.parametrize("claims", REFUSED.values(), ids=REFUSED.keys())
def test_claims_the_authorizer_refuses_are_refused(issuer, verifier, claims) -> None:
    with pytest.raises(Unauthorized) as info:
        verifier.verify(f"Bearer {issuer.token(**claims(int(time.time())))}")
    reply = jwt_auth.unauthorized_reply(info.value)
    assert (reply.status, json.loads(reply.body)) == (401, {"message": "Unauthorized"})
    assert reply.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_a_signature_by_another_key_under_a_known_kid_is_refused(issuer, verifier) -> None:
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthorized, match="[Ss]ignature"):
        verifier.verify(issuer.token(kid="rsa-1", key=forged, alg="RS256"))
    with pytest.raises(Unauthorized):  # a tampered payload under the real signature
        head, _, sig = issuer.token().split(".")
        other = issuer.token(sub="admin").split(".")[1]
        verifier.verify(f"{head}.{other}.{sig}")


def test_alg_none_and_shared_secret_algorithms_are_refused(issuer, verifier) -> None:
    unsigned = jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "exp": int(time.time()) + 60}, None,
                          algorithm="none", headers={"kid": "rsa-1"})
    with pytest.raises(Unauthorized, match="alg 'none'"):
        verifier.verify(unsigned)
    # the classic confusion: the public key's bytes as an HMAC secret
    hs = jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                    b"x" * 32, algorithm="HS256", headers={"kid": "rsa-1"})
    with pytest.raises(Unauthorized, match="alg 'HS256'"):
        verifier.verify(hs)
    # the token's alg never picks the algorithm for a key published for another one
    with pytest.raises(Unauthorized, match="does not match the key"):
        verifier.verify(issuer.token(kid="ec-1", headers={"kid": "rsa-1"}))


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer  ", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt"])
def test_a_missing_or_malformed_token_is_refused(verifier, header) -> None:
    with pytest.raises(Unauthorized) as info:
        verifier.verify(header)
    assert jwt_auth.unauthorized_reply(info.value).status == 401


def test_client_id_stands_for_aud_only_when_aud_is_absent(issuer, verifier) -> None:
    # Cognito access tokens carry client_id, not aud (the HTTP API authorizer reads it then)
    assert verifier.verify(issuer.token(aud=None, client_id=AUDIENCE))["client_id"] == AUDIENCE
    with pytest.raises(Unauthorized):
        verifier.verify(issuer.token(aud=None, client_id="someone-else"))
    with pytest.raises(Unauthorized):
        verifier.verify(issuer.token(aud="someone-else", client_id=AUDIENCE))
    assert verifier.verify(issuer.token(aud=["x", AUDIENCE]))["sub"] == "user-1"


def test_an_unknown_kid_refetches_the_key_set_once_then_passes_after_rotation(issuer) -> None:
    fresh = JwtVerifier(JwtSettings(issuer=issuer.url, audience=(AUDIENCE,)), cooldown_s=0)
    fresh.verify(issuer.token())
    fetched = issuer.fetches["/jwks.json"]
    issuer.rotate("rsa-2")
    assert fresh.verify(issuer.token(kid="rsa-2"))["sub"] == "user-1"
    assert issuer.fetches["/jwks.json"] == fetched + 1
    with pytest.raises(Unauthorized, match="no key of the issuer"):
        fresh.verify(issuer.token(kid="rsa-1", headers={"kid": "never-published"}))


def test_an_unreachable_issuer_refuses_without_saying_why_to_the_caller(issuer) -> None:
    fresh = JwtVerifier(JwtSettings(issuer=issuer.url, audience=(AUDIENCE,)), timeout_s=2)
    issuer.up = False
    try:
        with pytest.raises(IssuerUnavailable, match="discovery document") as info:
            fresh.verify(issuer.token())
        reply = jwt_auth.unauthorized_reply(info.value)
        assert reply.status == 401 and issuer.url not in reply.headers["WWW-Authenticate"]
    finally:
        issuer.up = True
    assert fresh.verify(issuer.token())["sub"] == "user-1"  # the next request retries


def test_settings_come_from_the_environment_and_fail_closed() -> None:
    assert jwt_auth.settings_from_env({}) is None
    env = {names.ENV_AUTH: "jwt", names.ENV_JWT_ISSUER: "https://issuer.example.com/",
           names.ENV_JWT_AUDIENCE: "a, b"}
    assert jwt_auth.settings_from_env(env) == JwtSettings("https://issuer.example.com/", ("a", "b"))
    with pytest.raises(jwt_auth.ConfigurationError, match="modelfn:jwt_issuer"):
        jwt_auth.settings_from_env({names.ENV_AUTH: "jwt"})
    with pytest.raises(jwt_auth.ConfigurationError, match="https"):
        jwt_auth.settings_from_env({**env, names.ENV_JWT_ISSUER: "http://issuer.example.com"})


def test_the_cdk_environment_of_a_jwt_stream_function_is_what_the_runtime_reads() -> None:
    """One flow: StackSettings' issuer/audiences → function_environment → settings_from_env."""
    from infra.environment import function_environment

    env = function_environment(model_name="m", kind="stream", auth="jwt",
                               jwt_issuer="https://issuer.example.com/", jwt_audience=("a", "b"))
    assert jwt_auth.settings_from_env(env) == JwtSettings("https://issuer.example.com/", ("a", "b"))
    for kind, auth in (("stream", "iam"), ("stream", "none"), ("api", "jwt")):  # URL or API checks
        assert jwt_auth.settings_from_env(function_environment(
            model_name="m", kind=kind, auth=auth, jwt_issuer="https://i.example.com/", jwt_audience=("a",))) is None
    with pytest.raises(ValueError, match="modelfn:jwt_issuer"):
        function_environment(model_name="m", kind="stream", auth="jwt")


def test_the_module_imports_in_images_without_pyjwt() -> None:
    """PyJWT is in generative images only; every image imports every layers module (the image
    lane checks it), so PyJWT is imported when a verifier is made, not with the module."""
    import subprocess
    import sys

    script = ("import sys; sys.modules['jwt'] = None; sys.modules['cryptography'] = None\n"
              "import layers.http.jwt_auth, functions.stream.runtime\n"
              "try:\n    layers.http.jwt_auth.JwtVerifier(layers.http.jwt_auth.JwtSettings('https://i.example', ('a',)))\n"
              "except ImportError:\n    print('lazy')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "lazy", out.stderr[-2000:]
