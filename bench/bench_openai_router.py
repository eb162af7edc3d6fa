"""The OpenAI router's added latency: the shared ``/openai/v1`` form vs the pinned one.

On AWS the pinned ``/openai/<model>/v1/embeddings`` is the model function's own route; the
shared ``/openai/v1/embeddings`` goes to the router function (``functions/openai_router``),
which reads the body's ``model`` and invokes the model's function with the same event. This
bench measures that hop side by side in one process, on the same model and requests,
interleaved rounds:

- **pinned**: the model's API handler on the pinned event (what the function does either way);
- **shared**: the real router (:class:`functions.openai_router.handler.Router`) on the shared
  event, invoking through a real botocore Lambda client (SigV4, HTTP) against a local
  Lambda ``Invoke`` endpoint that runs the same handler: the router's own work (body parse,
  event re-serialization, signing, the payload's JSON round trip) plus a loopback HTTP hop.

What it cannot measure here is the Lambda service's own invoke overhead inside AWS (the
network and front end between two functions; typically a few ms warm) and the router's cold
start on Lambda; the table shows the local process's cold start (imports + clients) instead.
The model: a MiniLM-L6-shaped encoder (hidden 384, 6 layers; seeded random weights, nothing
downloaded) as a sentence-transformers directory, built fp32 by ``modelfn build``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.report import Report, host_line

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3
SIZES = (1, 16, 64)


def _repeat(size: int) -> int:
    """Requests per round: 20 single texts, fewer for bigger batches (their requests take longer)."""
    return max(3, 20 // size)


def _model(work: Path) -> Path:
    from bench.bench_embeddings import make_model
    from infra.catalog import load_catalog
    from infra.pipeline import build_catalog

    st = make_model(work)
    (work / "models.yaml").write_text(f"models:\n  - name: emb\n    source: hf:{st}\n    quantize: none\n")
    (result,) = build_catalog(load_catalog(work / "models.yaml"), work / "build")
    if not result.ok:
        raise SystemExit(f"modelfn build failed: {result.error}")
    return work / "build" / "models" / "emb"


class _Context:
    function_name, memory_limit_in_mb, aws_request_id = "modelfn-emb-api", 2048, "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:modelfn-emb-api:live"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def _invoke_server(handler) -> ThreadingHTTPServer:
    """Lambda's ``Invoke`` API (``POST /2015-03-31/functions/<fn>/invocations``) over ``handler``."""

    class Invoke(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = json.dumps(handler(event, _Context())).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Amz-Executed-Version", "1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Invoke)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _event(path: str, body: dict) -> dict:
    return {"version": "2.0", "routeKey": f"POST {path}", "rawPath": path, "rawQueryString": "",
            "headers": {"content-type": "application/json", "host": "api.example.com"},
            "requestContext": {"http": {"method": "POST", "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1", "userAgent": "bench"},
                               "requestId": "bench", "routeKey": f"POST {path}", "stage": "$default",
                               "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
                               "domainPrefix": "api", "time": "", "timeEpoch": 0},
            "body": json.dumps(body), "isBase64Encoded": False}


def _cold_start() -> list[float]:
    code = ("import time; t = time.perf_counter(); import boto3; "
            "from functions.openai_router import handler; "
            "boto3.client('lambda', region_name='us-east-1'); boto3.client('ssm', region_name='us-east-1'); "
            "print(time.perf_counter() - t)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MODELFN_OPENAI_ROUTER", None)
    return [float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                 check=True).stdout) for _ in range(3)]


def main() -> None:
    import boto3

    from bench.embeddings_side import texts
    from functions.openai_router.handler import Router
    from layers import names
    from layers.openai_router import Deployed, decide, routes_of
    from layers.protocols import route_table

    report = Report("openai_router", "OpenAI router: the shared /openai/v1 form's added latency")
    report.note(host_line())
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _model(Path(tmp))
        os.environ[names.ENV_MODEL_DIR] = str(model_dir)
        from functions.api import handler as api

        server = _invoke_server(api.handler)
        client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="bench",
                              aws_secret_access_key="bench", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}")

        deployed = {"emb": Deployed("emb", "modelfn-emb-api:live", auth="iam")}

        class _Registry:  # the SSM registry, already loaded (its TTL refresh is one call a minute)
            models = deployed

            def current(self):
                return self.models

            def refresh_for_miss(self):
                return False

        routes = routes_of(route_table())
        router = Router(registry=_Registry(), lambda_client=client, routes=routes, route_auth="iam")
        rows, decide_rows, sink = [], [], open(os.devnull, "w")  # noqa: SIM115 (closed below)
        for size in SIZES:
            for fmt in ("base64", "float"):
                body = {"model": "emb", "input": texts(size, 3), "encoding_format": fmt}
                pinned, shared = _event("/openai/emb/v1/embeddings", body), _event("/openai/v1/embeddings", body)
                with contextlib.redirect_stdout(sink):
                    assert api.handler(pinned, _Context())["statusCode"] == 200
                with contextlib.redirect_stdout(sink):
                    out = router(shared)
                assert out["statusCode"] == 200, out
                direct_ms, routed_ms = [], []
                for _ in range(ROUNDS):  # interleaved: the shared host's load hits both alike
                    # (the handler's EMF lines go to a sink, as in bench_api)
                    for fn, into, ev in ((lambda e: api.handler(e, _Context()), direct_ms, pinned),
                                         (router, routed_ms, shared)):
                        samples = []
                        for _ in range(_repeat(size)):
                            with contextlib.redirect_stdout(sink):
                                t0 = time.perf_counter()
                                fn(ev)
                                samples.append(time.perf_counter() - t0)
                        into.append(statistics.median(samples) * 1000)
                d, r = statistics.median(direct_ms), statistics.median(routed_ms)
                added = [b - a for a, b in zip(direct_ms, routed_ms, strict=True)]
                payload = len(json.dumps(out)) / 1024
                rows.append([size, fmt, f"{payload:.0f} KB", f"{d:.2f}", f"{r:.2f}",
                             f"{statistics.median(added):.2f} ({min(added):.2f}–{max(added):.2f})", f"{r / d:.2f}x"])
                raw = json.dumps(body).encode()
                t0 = time.perf_counter()
                for _ in range(200):
                    decide("POST /openai/v1/embeddings", raw, None, deployed, routes, route_auth="iam")
                decide_rows.append([size, f"{len(raw) / 1024:.1f} KB",
                                    f"{(time.perf_counter() - t0) / 200 * 1e6:.0f}"])
        server.shutdown()
        sink.close()
        report.table("Warm, per request (median of 3 interleaved rounds of 20 // texts requests, at least 3; "
                     "added: median and spread over rounds)",
                     ["texts", "encoding", "response", "pinned ms", "shared ms", "added ms", "shared/pinned"], rows)
        report.table("The router's decision alone (body parse + registry lookup)",
                     ["texts", "request body", "µs"], decide_rows)
        cold = _cold_start()
        report.table("Router process cold start (fresh interpreter: imports + Lambda/SSM clients)",
                     ["runs", "median s", "min–max s"],
                     [[len(cold), f"{statistics.median(cold):.2f}", f"{min(cold):.2f}–{max(cold):.2f}"]])
        report.note("Not measured here: the Lambda service's own Invoke overhead between two functions in AWS, "
                    "and the router's Lambda cold start (a 512 MB arm64 python3.13 zip: boto3 and the registry "
                    "read at init). The pinned base URL /openai/<model>/v1 avoids the hop entirely.")
    report.write()


if __name__ == "__main__":
    main()
