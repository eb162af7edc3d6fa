"""The control routes (training, versions) in the one route table: parsed and routed the same
by every transport, never served by a model's own function."""

from __future__ import annotations

import pytest

from layers.errors import BadRequest, MethodNotAllowed
from layers.messages import Request
from layers.protocols import route_table
from layers.protocols.control import Conflict, dispatch, match, status_url, train_request
from layers.routes import Scope


def _req(body: str = "", query: dict | None = None, **headers) -> Request:
    return Request("POST", "/v2/models/m/train", {"name": "m"}, headers=headers, raw_body=body,
                   query=query or {})


def test_query_values_are_typed_and_override_the_body():
    hp, data = train_request(_req('{"hyperparameters": {"epochs": 1, "optimizer": "SGD"}, "data": "s3://b/p"}',
                                  {"epochs": "1000", "learning_rate": "0.001", "optimizer": "Adam",
                                   "shuffle": "true"}))
    assert hp == {"epochs": 1000, "learning_rate": 0.001, "optimizer": "Adam", "shuffle": True}
    assert data == "s3://b/p"
    assert train_request(_req(query={"data": "s3://b/q"})) == ({}, "s3://b/q")
    assert train_request(_req()) == ({}, None)


@pytest.mark.parametrize(("body", "words"), [
    ("[1]", "JSON object"), ("{", "not JSON"), ('{"epochs": 3}', "unknown body member(s) ['epochs']"),
    ('{"hyperparameters": [1]}', "JSON object of name: value"), ('{"data": 3}', "non-empty string"),
])
def test_bad_bodies_say_what_to_send(body, words):
    with pytest.raises(BadRequest, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        train_request(_req(body))


def test_control_routes_are_in_the_table_but_not_served_by_model_functions():
    table = route_table()
    control = table.control()
    assert {(r.method, r.path) for r in control} == {
        ("POST", "/v2/models/{name}/train"), ("GET", "/v2/models/{name}/train"),
        ("GET", "/v2/models/{name}/train/{run_id}"), ("GET", "/v2/models/{name}/versions"),
        ("POST", "/v2/models/{name}/versions/{version}/promote"), ("POST", "/v2/models/{name}/rollback")}
    assert all(r.scope is Scope.CONTROL for r in control)
    assert not set(control) & set(table.served())
    assert not {p for p, _ in table.control_gateway_routes("m")} & {p for p, _ in table.model_gateway_routes("m")}


def test_routing_and_405():
    route, params = match("GET", "/v2/models/m/train/r1")
    assert route.operation == "run" and params == {"name": "m", "run_id": "r1"}
    assert match("GET", "/v2/models/m/versions/v1") is None  # V2 metadata of a version, not control
    with pytest.raises(MethodNotAllowed) as exc:
        match("DELETE", "/v2/models/m/train")
    assert exc.value.allow == "GET, POST"


def test_status_url_is_absolute_when_the_host_is_known():
    assert status_url(_req(host="api.example.com"), "m", "r1") == "https://api.example.com/v2/models/m/train/r1"
    assert status_url(_req(), "m", "r1") == "/v2/models/m/train/r1"


class _Backend:
    def start_training(self, model, hyperparameters, data):
        raise Conflict("a training run of 'm' is already in progress")

    def rollback(self, model):
        raise RuntimeError("secret internals")


def test_dispatch_turns_client_errors_into_their_status_and_bugs_into_a_bare_500():
    train, _ = match("POST", "/v2/models/m/train")
    reply = dispatch(_Backend(), _req(), train)
    assert reply.status == 409 and "already in progress" in reply.body
    rollback, _ = match("POST", "/v2/models/m/rollback")
    reply = dispatch(_Backend(), _req(), rollback)
    assert reply.status == 500 and "secret" not in reply.body
