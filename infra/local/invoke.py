"""``modelfn invoke NAME --input FILE [--url URL] [--stack S]``: one V2 request, printed.

The URL is ``--url``, else the local stack if it is up, else the deployed stack's ``ApiUrl``
output. Requests to a deployed API are signed with SigV4 (``execute-api``) when credentials
are available, by the same signer as the tritonclient plugin (:mod:`infra.client`), so
IAM-auth models work; a model with ``auth: none`` ignores the signature.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from infra.client.sigv4 import NoCredentials, SigV4Signer
from infra.local.v2_input import InputError, load_request
from layers import names

LOCAL_URL = "http://127.0.0.1:3000"


def _local_is_up(url: str) -> bool:
    u = urlsplit(url)
    try:
        with socket.create_connection((u.hostname, u.port or 80), timeout=0.5):
            return True
    except OSError:
        return False


def stack_api_url(stack: str, client=None) -> str:
    """The ``ApiUrl`` output of the deployed CloudFormation stack ``stack``."""
    if client is None:
        import boto3

        client = boto3.client("cloudformation")
    out = client.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    for o in out:
        if o["OutputKey"] == names.OUTPUT_API_URL:
            return o["OutputValue"]
    raise LookupError(f"stack {stack!r} has no {names.OUTPUT_API_URL} output")


def resolve_url(url: str | None, stack: str) -> str:
    if url:
        return url.rstrip("/")
    if _local_is_up(LOCAL_URL):
        return LOCAL_URL
    try:
        return stack_api_url(stack).rstrip("/")
    except Exception as exc:
        raise RuntimeError(
            f"no URL to call: the local stack is not up at {LOCAL_URL} (start it with `make up`) "
            f"and the deployed stack {stack!r} could not be read ({exc}); pass --url URL") from exc


def _is_local(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def send(method: str, url: str, body: bytes | None = None,
         signer: SigV4Signer | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if not _is_local(url):
        headers = sign(method, url, body, headers, signer)
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def sign(method: str, url: str, body: bytes | None, headers: dict[str, str],
         signer: SigV4Signer | None = None) -> dict[str, str]:
    """SigV4 for ``execute-api`` (:class:`infra.client.SigV4Signer`, the signer the tritonclient
    plugin uses) with the caller's credentials; unsigned when there are none (``auth: none``)."""
    try:
        return (signer or SigV4Signer()).sign(method, url, body, headers)
    except NoCredentials:
        return headers


def invoke(args) -> int:
    try:
        base = resolve_url(args.url, args.stack)
    except RuntimeError as exc:
        print(f"modelfn invoke: {exc}", file=sys.stderr)
        return 2
    model_url = f"{base}/v2/models/{args.name}"

    signer = SigV4Signer()  # one credential lookup for both requests

    def metadata() -> dict:
        status, data = send("GET", model_url, signer=signer)
        if status != 200:
            raise InputError(f"GET {model_url} answered {status}: {data.decode(errors='replace')}")
        return json.loads(data)

    try:
        body = load_request(Path(args.input), metadata)
        status, data = send("POST", f"{model_url}/infer", body, signer)
    except InputError as exc:
        print(f"modelfn invoke: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"modelfn invoke: could not reach {base} ({exc})", file=sys.stderr)
        return 2
    try:
        print(json.dumps(json.loads(data), indent=2))
    except ValueError:
        print(data.decode(errors="replace"))
    if not 200 <= status < 300:
        print(f"modelfn invoke: {model_url}/infer answered HTTP {status}", file=sys.stderr)
        if status in (401, 403) and not _is_local(base):
            print("modelfn invoke: an auth: iam model needs a SigV4 signature from a principal "
                  "allowed execute-api:Invoke (credentials from the environment, AWS_PROFILE or "
                  "`aws sso login`); an auth: jwt model needs a bearer token", file=sys.stderr)
        return 1
    return 0
