"""Images: sizes of the sample catalog's images, and an API function's cold start (start to
first answer) run from its image vs as a host process, side by side.

Both variants are one Lambda execution environment polling the local Runtime API with the
CDK app's environment: the host process is ``python -m awslambdaric`` (what ``make up``
runs), the container is ``podman run --network host <image> <handler>`` (``make up
--containers``, the image ``cdk deploy`` ships, on the offline stand-in of the AWS base).
Timed from the start call to the first V2 metadata answer; variants alternate per round.

Run: ``python -m bench images`` → ``bench/results/images.md`` + ``images.png``. Needs podman
and debootstrap (``scripts/container_tools.sh``); the sample build and the images are the
image lane's, cached in ``~/.cache/modelfn/``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.report import Report

REPO = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MODELS = ("iris-classifier", "digits-mlp", "digits-cnn")


def _cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "infra.cli", *args], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"modelfn {args[0]} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def _first_answer(pool, model: str) -> float:
    from infra.local.gateway import LambdaIntegration, match_route
    from infra.local.http_api_events import HttpRequest

    path = f"/v2/models/{model}"
    _, route_key, params = match_route("GET", path)
    t0 = time.perf_counter()
    try:
        pool.start()
        resp = LambdaIntegration(pool)(HttpRequest("GET", path, "", [], b""), route_key, params, 60)
        elapsed = time.perf_counter() - t0
    finally:
        pool.stop()
    if pool.failure or resp.status != 200:
        raise RuntimeError(f"{model}: {pool.failure or resp.status}")
    return elapsed


def main() -> None:
    from infra.environment import function_environment
    from infra.image.engine import EngineError, find_engine
    from infra.image.standin import cache_dir, ensure_standin
    from infra.local.containers import ContainerRunner, instance_factory
    from infra.local.function_pool import FunctionPool, FunctionSpec
    from layers import names

    try:
        engine = find_engine("podman")
        standin = ensure_standin(engine, log=lambda m: print(m, file=sys.stderr))
    except EngineError as exc:
        raise SystemExit(f"bench images: {exc}") from None
    out = cache_dir() / "lane-build"
    _cli("build", "--catalog", str(REPO / "models.yaml"), "--out", str(out))
    images = {e["model"]: e for e in json.loads(_cli(
        "image", "--catalog", str(REPO / "models.yaml"), "--out", str(out), "--engine", "podman",
        "--base", standin, "--json"))["images"]}
    runner = ContainerRunner(engine)
    report = Report("images", "Images: sizes and cold start from the image vs a host process")
    report.note(f"engine {engine.name}, base: the offline stand-in ({standin}, "
                f"{engine.size_bytes(standin) / 1e6:.0f} MB); load average at start "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")
    report.table("Image sizes (uncompressed)", ["model", "image MB", "model layer KB",
                                                "runtime layers over the base MB"],
                 [[m, round(e["size_bytes"] / 1e6, 1), round(e["model_layer_bytes"] / 1e3, 1),
                   round((e["size_bytes"] - engine.size_bytes(standin) - e["model_layer_bytes"]) / 1e6, 1)]
                  for m, e in images.items()])
    got: dict[tuple[str, str], list[float]] = {}
    for _ in range(ROUNDS):
        for model in MODELS:
            env = {**function_environment(model_name=model, kind="api"), "POWERTOOLS_TRACE_DISABLED": "true"}
            host_env = {**env, names.ENV_MODEL_DIR: str(out / "models" / model)}
            spec = FunctionSpec(name=f"modelfn-{model}-api", handler=names.API_HANDLER,
                                env=host_env, cwd=str(REPO))
            got.setdefault((model, "host process"), []).append(_first_answer(FunctionPool(spec), model))
            cspec = FunctionSpec(name=f"modelfn-{model}-api", handler=names.API_HANDLER, env=env,
                                 cwd=str(REPO))
            pool = FunctionPool(cspec, instance_factory=instance_factory(
                runner=runner, image=images[model]["tag"]))
            got.setdefault((model, "container"), []).append(_first_answer(pool, model))
    rows, plot = [], {"host process": [], "container": []}
    for model in MODELS:
        host = statistics.median(got[(model, "host process")])
        ctr = statistics.median(got[(model, "container")])
        rows.append([model, round(host * 1000), round(ctr * 1000), round(ctr / host, 2)])
        plot["host process"].append(host * 1000)
        plot["container"].append(ctr * 1000)
    report.table(f"API function start → first V2 metadata answer, median of {ROUNDS} (ms)",
                 ["model", "host process ms", "container ms", "container / host"], rows)
    report.bar_plot("images.png", "Cold start to first answer (ms)", list(MODELS), plot, "ms")
    report.write()


if __name__ == "__main__":
    main()
