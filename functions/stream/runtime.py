"""Lambda entry point that streams: ``python -m functions.stream.runtime`` (the image's
entry point for a generative model's streaming function, set by the CDK app).

Lambda's managed Python runtime posts every response buffered; streaming needs the Runtime
API's streaming mode, which AWS documents for custom runtimes (and Node.js). So this module
is the runtime: it loads the model as the API function does (``functions.api.handler``: the
manifest's sha256 checked, one session per process; a failure is posted to
``/runtime/init/error`` and the process exits), then loops over the documented Runtime API:
``GET /2018-06-01/runtime/invocation/next`` → the function URL event (HTTP API payload 2.0) →
the route table's operation (:meth:`layers.http.binding.HttpBinding.handle`, every route, the
same errors) → ``POST …/invocation/<id>/response`` with
``Lambda-Runtime-Function-Response-Mode: streaming`` and a chunked body: the HTTP integration
prelude, then each chunk of ``Reply.stream`` (server-sent events) the moment the model
produces it (:mod:`layers.http.streaming`). A failure after the body started is reported in
the ``Lambda-Runtime-Function-Error-Type``/``-Body`` trailers (the status is already sent);
one before it is a 500 with the request id, as on the API function.

An ``auth: jwt`` model's URL has auth ``NONE`` (function URLs have no JWT authorizer), so this
runtime checks the bearer token itself before anything else (:mod:`layers.http.jwt_auth`: the
HTTP API authorizer's checks and its ``401 {"message": "Unauthorized"}``), when
``MODELFN_AUTH=jwt``; a refused request never reaches the model.

Standard library only (http.client): nothing here is on the request path's hot loop but the
model's own work.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from layers import names
from layers.http.streaming import (
    CONTENT_TYPE,
    ERROR_BODY_TRAILER,
    ERROR_TYPE_TRAILER,
    RESPONSE_MODE_HEADER,
    STREAMING,
    request_from_event,
    response_parts,
)
from layers.messages import JSON, Reply

PREFIX = "/2018-06-01/runtime"


@dataclass
class LambdaContext:
    """What Powertools and the handlers read from a Lambda context, from the next-invocation
    headers and the documented environment variables."""

    aws_request_id: str
    invoked_function_arn: str
    deadline_ms: int
    function_name: str = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    function_version: str = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    memory_limit_in_mb: int = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0") or 0)
    log_group_name: str = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
    log_stream_name: str = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


class RuntimeApi:
    """A client of the Lambda Runtime API at ``address`` (``AWS_LAMBDA_RUNTIME_API``)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)

    def _conn(self, timeout: float | None = None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def next(self) -> tuple[Any, LambdaContext]:
        """Long-poll the next invocation: (event, context)."""
        conn = self._conn()
        try:
            conn.request("GET", f"{PREFIX}/invocation/next")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"Runtime API /invocation/next answered {resp.status}: {body[:200]!r}")
            trace = resp.getheader("Lambda-Runtime-Trace-Id")
            if trace:
                os.environ["_X_AMZN_TRACE_ID"] = trace
            else:
                os.environ.pop("_X_AMZN_TRACE_ID", None)
            context = LambdaContext(
                aws_request_id=resp.getheader("Lambda-Runtime-Aws-Request-Id") or "",
                invoked_function_arn=resp.getheader("Lambda-Runtime-Invoked-Function-Arn") or "",
                deadline_ms=int(resp.getheader("Lambda-Runtime-Deadline-Ms") or 0))
        finally:
            conn.close()
        return json.loads(body), context

    def stream(self, request_id: str, parts: Iterable[bytes]) -> None:
        """POST the response in streaming mode, each part a chunk sent as it is produced; an
        exception while producing ends the body with the error trailers, then re-raises."""
        conn = self._conn()
        try:
            conn.putrequest("POST", f"{PREFIX}/invocation/{request_id}/response", skip_accept_encoding=True)
            conn.putheader(RESPONSE_MODE_HEADER, STREAMING)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.putheader("Content-Type", CONTENT_TYPE)
            conn.putheader("Trailer", f"{ERROR_TYPE_TRAILER}, {ERROR_BODY_TRAILER}")
            conn.endheaders()
            failure: BaseException | None = None
            try:
                for part in parts:
                    conn.send(b"%X\r\n%s\r\n" % (len(part), part))
            except Exception as exc:  # the status went out with the prelude: say it in trailers
                failure = exc
            if failure is None:
                conn.send(b"0\r\n\r\n")
            else:
                doc = {"errorType": type(failure).__name__, "errorMessage": str(failure)}
                body = base64.b64encode(json.dumps(doc).encode()).decode()
                conn.send(f"0\r\n{ERROR_TYPE_TRAILER}: Function.{type(failure).__name__}\r\n"
                          f"{ERROR_BODY_TRAILER}: {body}\r\n\r\n".encode())
            conn.getresponse().read()
        finally:
            conn.close()
        if failure is not None:
            raise failure

    def error(self, path: str, exc: BaseException) -> None:
        """Report an error document (``/init/error`` or ``/invocation/<id>/error``)."""
        doc = {"errorType": type(exc).__name__, "errorMessage": str(exc),
               "stackTrace": traceback.format_exception(exc)[-5:]}
        conn = self._conn(timeout=10)
        try:
            conn.request("POST", f"{PREFIX}/{path}", body=json.dumps(doc).encode(), headers={
                "Content-Type": "application/json",
                "Lambda-Runtime-Function-Error-Type": f"Runtime.{type(exc).__name__}"})
            conn.getresponse().read()
        finally:
            conn.close()


Invoke = Callable[[Any, LambdaContext], Reply]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_invoke(binding: Any, obs: Any = None, *, verifier: Any = None,
                log: Callable[[str], None] = _stderr) -> Invoke:
    """A function URL event → the reply of the route it asks for (``binding``'s router and
    operations, recorded by ``obs`` as the other entry points record requests). With a
    ``verifier`` (:class:`layers.http.jwt_auth.JwtVerifier`) the event's bearer token is checked
    first and a refused one answered 401 without reaching the route; ``log`` gets the reason."""
    handle = obs.entry_point(binding.handle) if obs is not None else binding.handle

    def invoke(event: Any, context: LambdaContext) -> Reply:
        if verifier is not None:
            from layers.http import jwt_auth

            headers = event.get("headers") if isinstance(event, dict) else None
            authorization = next((v for k, v in (headers or {}).items()
                                  if isinstance(k, str) and k.lower() == "authorization"), None)
            try:
                verifier.verify(authorization)
            except jwt_auth.Unauthorized as exc:
                log(f"request {context.aws_request_id} refused ({type(exc).__name__}): {exc.reason}")
                return jwt_auth.unauthorized_reply(exc)
        try:
            req = request_from_event(event, binding.limit, context)
        except (KeyError, TypeError, AttributeError):
            return Reply(400, JSON, json.dumps({"error": (
                "this function answers Lambda function URL requests (HTTP API payload 2.0 events); "
                "call its function URL, or the model's HTTP API routes for the whole answer at once.")}))
        return handle(req, context)

    return invoke


def serve_one(api: RuntimeApi, invoke: Invoke, log: Callable[[str], None]) -> None:
    """One invocation: next → reply → streamed response."""
    event, context = api.next()
    rid = context.aws_request_id
    try:
        reply = invoke(event, context)
    except Exception as exc:  # a bug the binding did not catch: answer it, never hang the invoke
        log(f"internal error (request id {rid}): {''.join(traceback.format_exception(exc))}")
        reply = Reply(500, JSON, json.dumps({"error": f"internal error; request id {rid}"}))
    try:
        api.stream(rid, response_parts(reply))
    except Exception as exc:
        log(f"the stream failed after it started (request id {rid}): "
            f"{''.join(traceback.format_exception(exc))}")


def jwt_verifier(log: Callable[[str], None]) -> Any:
    """The token verifier of an ``auth: jwt`` function (None otherwise), its keys fetched now
    if the issuer answers (else on the first request, which retries)."""
    if os.environ.get(names.ENV_AUTH) != "jwt":
        return None
    from layers.http import jwt_auth  # PyJWT: only jwt functions import it

    verifier = jwt_auth.JwtVerifier(jwt_auth.settings_from_env())
    try:
        verifier.warm()
    except jwt_auth.Unauthorized as exc:
        log(f"init: the JWT issuer's keys are not readable yet ({exc.reason}); each request retries")
    return verifier


def main(invocations: int | None = None) -> int:
    """Init, then serve ``invocations`` events (default: until Lambda stops the process)."""
    api = RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    log = _stderr
    try:
        verifier = jwt_verifier(log)  # a jwt function without its settings never serves
        from functions.api import handler as entry  # loads and verifies the model

        invoke = make_invoke(entry.binding, entry.obs, verifier=verifier, log=log)
    except Exception as exc:
        log(f"init failed: {''.join(traceback.format_exception(exc))}")
        api.error("init/error", exc)
        return 1
    count = 0
    while invocations is None or count < invocations:
        serve_one(api, invoke, log)
        count += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
