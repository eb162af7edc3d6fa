"""The OpenAPI document of every model on the local stack: what it declares, and schemathesis
(all checks, bounded examples) run against it over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("local-stack")]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SERVING = ("pair", "dyn", "tiny", "pair-sm")  # the stack's catalog; pair-sm runs on local SageMaker


def get(stack, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(stack.url + path, timeout=60) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("content-type", ""), err.read()


def test_the_document_declares_the_v2_bodies_with_the_models_own_inputs_and_every_error(stack):
    # when
    status, ctype, body = get(stack, "/v2/models/pair/openapi.json")
    doc = json.loads(body)
    # then: the request body is the model's V2 request, with a working example
    assert status == 200 and ctype.startswith("application/json") and doc["openapi"] == "3.1.0"
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    example = infer["requestBody"]["content"]["application/json"]["example"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in example["inputs"]] == [
        ("a", "FP32", [1, 3]), ("b", "FP32", [1, 3])]
    request = doc["components"]["schemas"]["InferenceRequest"]
    names = [s["properties"]["name"]["const"] for s in request["properties"]["inputs"]["items"]["oneOf"]]
    assert names == ["a", "b"]
    assert request["properties"]["outputs"]["items"]["properties"]["name"] == {"enum": ["sum", "prod"]}
    # and every error status the route can return, with the {"error"} body
    assert set(infer["responses"]) == {"200", "400", "404", "405", "413", "415", "503"}
    assert infer["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    meta = doc["paths"]["/v2/models/{name}"]["get"]
    assert set(meta["responses"]) == {"200", "404", "405", "503"}
    # and the example really runs
    req = urllib.request.Request(stack.url + "/v2/models/pair/infer", data=json.dumps(example).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert {o["name"] for o in json.loads(resp.read())["outputs"]} == {"sum", "prod"}


def test_docs_is_swagger_ui_on_the_same_document(stack):
    status, ctype, body = get(stack, "/docs")
    assert status == 200 and ctype.startswith("text/html")
    assert b"swagger-ui" in body and b"InferenceRequest" in body


@pytest.mark.parametrize("method", ["TRACE", "QUERY", "DELETE"])
def test_any_other_method_on_a_route_is_405_with_allow(stack, method):
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(stack.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request(method, "/v2/models/tiny/infer")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 405 and resp.getheader("allow") == "POST"
    assert "use POST" in json.loads(body)["error"]


def test_schemathesis_finds_nothing_against_any_models_document(stack, tmp_path):
    # every check (status codes, content types, response schemas, negative data rejected,
    # positive data accepted, undeclared methods, …), a fixed seed, ≤5 examples per operation;
    # the models run side by side (most of each run is waiting on the stack)
    runs = {}
    for model in SERVING:
        out = tmp_path / model
        out.mkdir()
        cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
               f"{stack.url}/v2/models/{model}/openapi.json", "--url", stack.url, "--checks", "all",
               "--max-examples", "5", "--seed", "14", "--workers", "1", "--report", "junit",
               "--report-dir", str(out), "--output-truncate", "true"]
        runs[model] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       cwd=out)
    outputs = {model: proc.communicate(timeout=300)[0] for model, proc in runs.items()}
    failed = {m: outputs[m][-8000:] for m, proc in runs.items() if proc.returncode != 0}
    assert not failed, "\n\n".join(f"--- {m}\n{text}" for m, text in failed.items())
    from layers.protocols import route_table

    served = {f"{r.method} {r.path}" for r in route_table().served()}
    for model in outputs:  # every route of the document ran (the junit report: one case per operation)
        ran = {case.get("name") for xml in (tmp_path / model).glob("*.xml")
               for case in ET.parse(xml).getroot().iter("testcase")}
        assert served <= ran, (model, sorted(served - ran))
