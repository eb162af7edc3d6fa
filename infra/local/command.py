"""``modelfn up`` and ``modelfn invoke`` (wired in infra/cli.py)."""

from __future__ import annotations

import json
import logging
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from infra.local.invoke import invoke as _invoke
from infra.local.processes import PortInUse


def invoke(args) -> int:
    return _invoke(args)


def up(args) -> int:
    """Serve the catalog until Ctrl-C / SIGTERM; every child process is stopped on the way out."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s | %(message)s", stream=sys.stderr)
    logging.getLogger("modelfn").setLevel(logging.INFO)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _serve(args, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(args, stop: threading.Event) -> int:
    from infra.catalog import CatalogError
    from infra.local.stack import LocalStack

    containers = None
    if getattr(args, "containers", False):
        from infra.image.engine import EngineError
        from infra.local.containers import ContainerRunner, ImageSet

        try:
            containers = ImageSet(ContainerRunner.find(args.engine), python_base=args.base)
        except EngineError as exc:
            print(f"modelfn up --containers: {exc}", file=sys.stderr)
            return 1
    stack = LocalStack(catalog_path=Path(args.catalog), out_dir=Path(args.out), host=args.host,
                       port=args.port, s3_port=args.s3_port, warm=args.warm,
                       build=not args.no_build, log_sink=_function_log, containers=containers,
                       on_build_stage=lambda model, stage: print(f"{time.strftime('%H:%M:%S')} build {model}: {stage}",
                                                                 file=sys.stderr, flush=True))
    print(f"modelfn up: {'building what is stale and ' if stack.build else ''}starting "
          f"{args.catalog} …", file=sys.stderr, flush=True)
    try:
        stack.start()
    except (PortInUse, CatalogError, FileNotFoundError) as exc:
        print(f"modelfn up: {exc}", file=sys.stderr)
        return 2
    try:
        if not stop.is_set():  # Ctrl-C during the build/startup: skip straight to stopping
            print(banner(stack), flush=True)
            # wake up now and then: a signal delivered to another thread only sets a flag
            # that Python's main thread checks when it runs, not while blocked in wait()
            while not stop.wait(0.5):
                pass
        print("\nmodelfn up: stopping …", file=sys.stderr, flush=True)
    finally:
        stack.stop()
    print("modelfn up: stopped; every function process has exited.", file=sys.stderr)
    return 0


def _function_log(line: str) -> None:
    """Function output, one line each, prefixed ``<model>/<function>`` like a log stream."""
    sys.stderr.write(line + "\n")


def banner(stack) -> str:
    lines = ["", f"modelfn local stack is up (ready in {stack.timings.get('ready_s', 0):.1f} s)", "",
             f"  API (HTTP API 2.0)  {stack.url}",
             f"  docs                {stack.url}/docs",
             f"  S3 endpoint         {stack.s3_endpoint}  (bucket {stack.aws.bucket}; "
             f"drop files under s3://{stack.aws.bucket}/<model>/in/)",
             "  tracing             off locally (no X-Ray daemon; POWERTOOLS_TRACE_DISABLED=true)",
             *([f"  retraining          drop files under s3://{stack.aws.bucket}/<model>/train/ "
                f"({', '.join(stack.retrainers)})"] if stack.retrainers else [])]
    if stack.containers is not None:
        lines.append(f"  functions           run from their images ({stack.containers.runner.engine.name}, "
                     "host network): " + ", ".join(sorted((stack.containers.tags or {}).values())))
    lines += ["", "  models:"]
    for svc in stack.services.values():
        if svc.failure:
            lines.append(f"    ✗ {svc.name:<24} NOT SERVING: {svc.failure}")
        else:
            m = svc.manifest
            if svc.sagemaker:
                where = "sagemaker serving container"
            elif svc.batch and svc.batch.failure:
                where = f"api ×{svc.api.size}; batch NOT SERVING: {svc.batch.failure}"
            else:
                where = f"api ×{svc.api.size} + batch function"
            lines.append(f"    ✓ {svc.name:<24} v{m.version}  {m.quantization.get('mode', '?'):<8} {where}")
    example = example_curl(stack)
    if example:
        lines += ["", "  try:", f"    {example}"]
    lines += ["", "Ctrl-C stops everything."]
    return "\n".join(lines)


def example_curl(stack) -> str | None:
    """One ``curl`` for a serving model, with a real row from its catalog example input."""
    from infra.catalog import load_catalog
    from infra.local.v2_input import InputError, load_arrays, v2_request

    catalog = load_catalog(stack.catalog_path)
    best = None
    for spec in catalog.models:
        svc = stack.services.get(spec.name)
        if svc is None or svc.failure or svc.manifest is None:
            continue
        meta = {"name": spec.name, "inputs": [t.to_dict() for t in svc.manifest.inputs]}
        try:
            if spec.example_input is not None:
                req = v2_request(load_arrays(Path(spec.example_input)), meta, rows=slice(0, 1))
            else:
                pre = (svc.manifest.extra.get("processing") or {}).get("preprocess") or {}
                req = _zeros_request(svc.manifest.inputs, pre.get("kind"))
        except (InputError, ValueError, TypeError):
            continue
        body = json.dumps(req, separators=(",", ":"))
        if best is None or len(body) < len(best[1]):
            best = (spec.name, body)
    if best is None:
        return None
    name, body = best
    return (f"curl -s -X POST {stack.url}/v2/models/{name}/infer "
            f"-H 'content-type: application/json' -d {shlex.quote(body)}")


def _zeros_request(inputs, kind: str | None = None) -> dict:
    """A request each input kind accepts: a sentence for text, a small PNG (base64, as JSON
    carries image bytes) for images, zeros for tensors."""
    import numpy as np

    from layers.codec import encode_tensor, to_numpy_dtype

    def example(t) -> np.ndarray:
        shape = [d if d > 0 else 1 for d in t.shape]
        if t.datatype == "BYTES" and kind == "image":
            return np.full(shape, _tiny_png_base64(), dtype=object)
        if t.datatype == "BYTES":  # a text model: a sentence says more than an empty string
            return np.full(shape, "modelfn serves this sentence", dtype=object)
        return np.zeros(shape, dtype=to_numpy_dtype(t.datatype))

    return {"inputs": [encode_tensor(t.name, example(t)) for t in inputs]}


def _tiny_png_base64() -> str:
    """An 8×8 grey PNG, base64-encoded (the function decodes and resizes it like any upload)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()
