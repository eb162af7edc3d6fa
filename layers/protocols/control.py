"""Training and versions over HTTPS: the control routes, registered like any protocol.

Routes (``Scope.CONTROL``: the path names the model, the control function answers; on AWS
always IAM-authorized whatever the model's inference ``auth``):

- ``POST /v2/models/{name}/train``: start a run of the model's ``training:`` entry point.
  Hyperparameters from the JSON body ``{"hyperparameters": {...}, "data": "s3://…"}`` and/or
  query parameters (``?epochs=3&learning_rate=0.001&optimizer=Adam``: each value decoded as
  JSON where it is JSON, so numbers are numbers; ``data`` is the data location), over the
  catalog's. Answers ``202 {"model", "run_id", "status": "queued", "status_url"}`` with a
  ``Location`` header.
- ``GET /v2/models/{name}/train``: the model's runs, newest first.
- ``GET /v2/models/{name}/train/{run_id}``: one run: ``status`` (queued, running, succeeded,
  failed), ``created_at``/``started_at``/``finished_at``, the new ``version``, ``promoted``,
  the gate's ``reason``, ``metrics``, ``error`` when it failed.
- ``GET /v2/models/{name}/versions``, ``POST …/versions/{version}/promote``,
  ``POST …/rollback``: as ``modelfn versions/promote/rollback --json`` answer.

The operations translate HTTP into a :class:`ControlBackend`: the local stack's runs the CLI's
own code (:mod:`infra.local.control`), the deployed control function starts and reads the
model's Step Functions execution (:mod:`functions.control`). Client mistakes are 4xx
(:class:`Conflict` for a run already in progress); nothing here imports the build side.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from layers.errors import BadRequest, MethodNotAllowed, ModelfnError
from layers.messages import JSON, Reply, Request
from layers.protocols import Protocol as RegisteredProtocol
from layers.protocols import register
from layers.routes import GET, POST, Route, Scope

NAME = "control"
TRAIN_PATH = "/v2/models/{name}/train"
RUN_PATH = TRAIN_PATH + "/{run_id}"
STATUSES = ("queued", "running", "succeeded", "failed")
#: body members of ``POST …/train``
BODY_KEYS = ("hyperparameters", "data")
#: query parameters of ``POST …/train`` that are not hyperparameters
RESERVED_QUERY = ("data",)


class Conflict(ModelfnError):
    """The request clashes with the model's state (a run already in progress)."""

    status = 409


class ControlBackend(Protocol):
    """What the control routes act on: a local version store or the deployed stack."""

    def start_training(self, model: str, hyperparameters: dict[str, Any], data: str | None) -> dict[str, Any]: ...
    def training_run(self, model: str, run_id: str) -> dict[str, Any]: ...
    def training_runs(self, model: str) -> list[dict[str, Any]]: ...
    def versions(self, model: str) -> dict[str, Any]: ...
    def promote(self, model: str, version: str) -> dict[str, Any]: ...
    def rollback(self, model: str) -> dict[str, Any]: ...


def _route(method: str, path: str, operation: str, summary: str) -> Route:
    return Route(method, path, operation, NAME, Scope.CONTROL, summary=summary)


ROUTES = (
    _route(POST, TRAIN_PATH, "train", "Start a training run (202; follow status_url)"),
    _route(GET, TRAIN_PATH, "runs", "The model's training runs, newest first"),
    _route(GET, RUN_PATH, "run", "One training run's status, version, promotion and metrics"),
    _route(GET, "/v2/models/{name}/versions", "versions", "Versions, lineage and which is live"),
    _route(POST, "/v2/models/{name}/versions/{version}/promote", "promote", "Make a kept version live"),
    _route(POST, "/v2/models/{name}/rollback", "rollback", "Make the previously live version live again"),
)


def decode_value(raw: str) -> Any:
    """A query parameter's value: JSON where it is JSON (``3`` → 3, ``true`` → True), else text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def train_request(request: Request) -> tuple[dict[str, Any], str | None]:
    """(hyperparameters, data) from the JSON body and the query string (the query wins)."""
    body, _ = request.body()
    doc: Any = {}
    if body and body.strip():
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise BadRequest(f"the body is not JSON ({exc}); send {{\"hyperparameters\": {{...}}, "
                             "\"data\": \"s3://…\"}} or query parameters") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object: {\"hyperparameters\": {...}, \"data\": \"s3://…\"}")
    if unknown := sorted(set(doc) - set(BODY_KEYS)):
        raise BadRequest(f"unknown body member(s) {unknown}; the body takes {list(BODY_KEYS)} "
                         "(hyperparameters go inside \"hyperparameters\")")
    hyperparameters = doc.get("hyperparameters") or {}
    if not isinstance(hyperparameters, dict):
        raise BadRequest("\"hyperparameters\" must be a JSON object of name: value")
    data = doc.get("data")
    query = dict(request.query or {})
    if "data" in query:
        data = query.pop("data")
    if data is not None and (not isinstance(data, str) or not data):
        raise BadRequest("\"data\" must be a non-empty string: an s3:// prefix (locally also a folder)")
    hyperparameters = {**hyperparameters, **{k: decode_value(v) for k, v in query.items()}}
    return hyperparameters, data


def status_url(request: Request, model: str, run_id: str) -> str:
    """Absolute when the request says where it was sent (Host), else the path."""
    path = RUN_PATH.replace("{name}", model).replace("{run_id}", run_id)
    host = request.header("host")
    if not host:
        return path
    proto = request.header("x-forwarded-proto") or "https"
    return f"{proto}://{host}{path}"


def _with_url(request: Request, run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "status_url": status_url(request, run["model"], run["run_id"])}


def train(backend: ControlBackend, request: Request) -> Reply:
    hyperparameters, data = train_request(request)
    run = _with_url(request, backend.start_training(request.params["name"], hyperparameters, data))
    return json_reply(202, run, {"Location": run["status_url"]})


def runs(backend: ControlBackend, request: Request) -> Reply:
    name = request.params["name"]
    return json_reply(200, {"model": name, "runs": [_with_url(request, r) for r in backend.training_runs(name)]})


def run(backend: ControlBackend, request: Request) -> Reply:
    return json_reply(200, _with_url(request, backend.training_run(request.params["name"], request.params["run_id"])))


def versions(backend: ControlBackend, request: Request) -> Reply:
    return json_reply(200, backend.versions(request.params["name"]))


def promote(backend: ControlBackend, request: Request) -> Reply:
    return json_reply(200, backend.promote(request.params["name"], request.params["version"]))


def rollback(backend: ControlBackend, request: Request) -> Reply:
    return json_reply(200, backend.rollback(request.params["name"]))


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The control route serving ``method path`` and its path parameters (None: not a control
    path); a control path with another method raises :class:`MethodNotAllowed`. (The rows
    are this module's, which the table holds; reading them here keeps the stdlib-only control
    function from loading the V2 protocol.)"""
    allowed = []
    for route in ROUTES:
        if m := route.pattern().match(path):
            if route.method == method:
                return route, m.groupdict()
            allowed.append(route.method)
    if allowed:
        allow = ", ".join(sorted(set(allowed)))
        raise MethodNotAllowed(f"{method} is not allowed on {path}; use {allow}", allow=allow)
    return None


def dispatch(backend: ControlBackend, request: Request, route: Route, log: Any = None) -> Reply:
    """Answer ``request`` (routed to ``route``): client mistakes as ``{"error"}`` with their
    status, anything else a 500 naming no internals (the trace goes to ``log``)."""
    try:
        return OPERATIONS[route.operation](backend, request)
    except ModelfnError as exc:
        allow = getattr(exc, "allow", "")
        return json_reply(exc.status, exc.body(), {"Allow": allow} if allow else None)
    except Exception:
        if log is not None:
            log.exception("control route %s %s failed", route.method, route.path)
        return json_reply(500, {"error": f"internal error; request id {request.request_id}"})


def json_reply(status: int, doc: Any, headers: dict[str, str] | None = None) -> Reply:
    """Small JSON answers with the stdlib (the control function carries no orjson)."""
    return Reply(status, JSON, json.dumps(doc, default=str), headers)


OPERATIONS = {"train": train, "runs": runs, "run": run, "versions": versions, "promote": promote,
              "rollback": rollback}

def _document(model: Any) -> dict[str, Any]:
    from layers.protocols.control_document import fragment  # not in the control function's zip

    return fragment(model.name)


PROTOCOL = register(RegisteredProtocol(NAME, ROUTES, OPERATIONS, _document))  # type: ignore[arg-type]
