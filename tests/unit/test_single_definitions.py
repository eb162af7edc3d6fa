"""Each concept is defined once: the route table, the V2 datatype table, the SageMaker wire
format. These tests import the one definition and check every consumer uses it (the CDK
API's synthesized routes: ``tests/infra/test_constructs.py``)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from layers import datatypes
from layers.protocols import route_table
from layers.routes import Scope

REPO = Path(__file__).resolve().parents[2]


def _sources(*roots: str):
    for root in roots:
        yield from (p for p in (REPO / root).rglob("*.py") if ".venv" not in p.parts)


# --- datatypes ------------------------------------------------------------------------------
def test_every_datatype_consumer_reads_the_one_table():
    from infra.build import builder, fit, signature
    from layers import codec, manifest, model, v2_wire
    from layers.protocols.v2 import document

    assert manifest.V2_DATATYPES is datatypes.V2_DATATYPES
    assert codec._NUMPY is datatypes.TO_NUMPY and codec._V2 is datatypes.FROM_NUMPY
    assert model._ORT_TO_V2 is datatypes.FROM_ORT
    assert signature.ONNX_TO_V2 is datatypes.FROM_ONNX
    assert {k: v for k, v in datatypes.TO_NUMPY.items() if k != "BYTES"} == builder.V2_TO_NUMPY
    assert {k: v for k, v in fit.BYTES_PER_DATATYPE.items() if k != "BYTES"} == {
        k: v for k, v in datatypes.ITEMSIZE.items() if k != "BYTES"}
    assert list(datatypes.V2_DATATYPES) == document.DATATYPES
    assert v2_wire.HEADER_LENGTH is datatypes.HEADER_LENGTH


def test_the_table_agrees_with_onnx_and_numpy():
    onnx = pytest.importorskip("onnx")
    for row in datatypes.TABLE:
        assert onnx.helper.tensor_dtype_to_np_dtype(row.onnx) == (np.dtype(object) if row.name == "BYTES"
                                                                 else row.numpy) or row.name == "BYTES"
        assert row.itemsize == (0 if row.name == "BYTES" else row.numpy.itemsize)


@pytest.mark.parametrize("literal", ['"tensor(float16)"', '"Inference-Header-Content-Length"',
                                     "np.dtype(np.uint16)", '"UINT32": 4'])
def test_no_other_module_keeps_its_own_datatype_table(literal):
    holders = [p.relative_to(REPO).as_posix() for p in _sources("layers", "functions", "infra")
               if literal in p.read_text(encoding="utf-8")]
    assert holders in ([], ["layers/datatypes.py"], ["layers/names.py"]), holders


# --- routes ---------------------------------------------------------------------------------
def test_the_local_gateway_routes_the_tables_routes():
    from infra.local import gateway

    table = route_table()
    assert set(gateway.SHARED_ROUTES) == {p for p, _ in table.server_gateway_routes()}
    for name in ("tiny", "other-model"):
        for path, method in table.model_gateway_routes(name):
            concrete = path.replace("{version}", "v1").replace("{proxy+}", "a/b")
            got_name, key, params = gateway.match_route(method if method != "ANY" else "DELETE", concrete)
            assert got_name == name and key == f"{method} {path}", (method, path)
            if "{version}" in path:
                assert params == {"version": "v1"}
    for path, method in table.server_gateway_routes():
        assert gateway.match_route(method, path) == (None, f"{method} {path}", None)


def test_the_openapi_document_documents_exactly_the_served_routes(tiny_model_dir):
    from layers.model import load_model
    from layers.protocols.docs import document

    doc = document(load_model(tiny_model_dir))
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    # the model's own routes and its control routes (on the same API, IAM-only on AWS)
    assert documented == {(r.path, r.method) for r in (*route_table().served(), *route_table().control())}


def test_the_lambda_binding_serves_every_route_of_the_table(tiny_model_dir, lambda_context):
    from layers.http.fastpath import FastPath
    from layers.http.resolver import build_app
    from layers.model import load_model
    from tests.conftest import load_event

    model = load_model(tiny_model_dir)
    app = build_app(model)
    for route in route_table().served():
        path = route.path.replace("{name}", model.name).replace("{version}", model.version).replace(
            "{model}", model.name)
        event = load_event("http_health_live")
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = route.method
        # every route is routed (no 404/405): a POST without a body is the protocol's 400
        status = app.resolve(event, lambda_context)["statusCode"]
        assert status == (400 if route.method == "POST" else 200), (route, status)
        assert (FastPath().match(event) is not None) == route.fast


def test_every_model_route_names_its_model_in_the_path():
    for route in route_table():
        if route.scope is Scope.MODEL:
            assert "{name}" in route.path, route
        if route.scope is Scope.BODY:
            assert route.body_field, route
        assert re.fullmatch(r"(/[^/]*)+", route.path), route


# --- the SageMaker wire format --------------------------------------------------------------
def test_every_custom_attributes_writer_and_reader_uses_the_wire_module():
    from functions.async_batch import handler as glue
    from functions.proxy import handler as proxy
    from functions.sagemaker import serve
    from infra.local import sagemaker as local_sagemaker
    from layers import sagemaker_wire as wire

    assert serve.CUSTOM_ATTRIBUTES is wire.HEADER is local_sagemaker.CUSTOM_ATTRIBUTES
    assert glue.BATCH_ATTRIBUTE is wire.BATCH_ATTRIBUTE
    attrs = proxy.custom_attributes("POST", "/v2/models/m/infer", "12")
    assert attrs == wire.request_attributes("POST", "/v2/models/m/infer", "12")
    assert serve.parse_custom_attributes(attrs) == ("POST", "/v2/models/m/infer", "12") == tuple(wire.parse(attrs))
    assert wire.parse(wire.response_attributes(7)).header_length == "7"


def _code_strings(path: Path) -> list[str]:
    """The source of every string literal in ``path`` that is not a docstring."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [ast.get_source_segment(source, n) or "" for n in ast.walk(tree)
            if isinstance(n, ast.Constant | ast.JoinedStr) and isinstance(getattr(n, "value", ""), str | list)
            and id(n) not in docs]


@pytest.mark.parametrize("literal", ["X-Amzn-SageMaker-Custom-Attributes", "route={", "route=POST",
                                     "inference-header-content-length="])
def test_no_other_module_writes_or_parses_custom_attributes(literal):
    holders = [p.relative_to(REPO).as_posix() for p in _sources("layers", "functions", "infra")
               if p.name != "sagemaker_wire.py" and any(literal in s for s in _code_strings(p))]
    assert holders == [], holders
