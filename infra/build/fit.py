"""Lambda or SageMaker? Decided from measured facts, with a monthly cost estimate.

Checks (design.md "Hard limits"): image size (artifact + runtime image) ≤ 10 GB; memory the
function needs (peak RSS at batch 1 + headroom) ≤ 10,240 MB; init ≤ 10 s; p99 latency at
batch 1 ≤ the 30 s HTTP API timeout; a batch-1 request/response ≤ 6 MB; no GPU required.
Any failed check sends ``target: auto`` to SageMaker; the reasons say which and by how much.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import math
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from layers import datatypes, names

# --- documented constants ------------------------------------------------------------------
#: Uncompressed size of the AWS Lambda Python 3.11 base image (public.ecr.aws/lambda/python),
#: rounded up; our runtime packages are measured on top of it.
LAMBDA_PYTHON_BASE_IMAGE_BYTES = 600 * 1024**2
#: Headroom over measured peak RSS (request buffers, JSON decode, Powertools, GC slack).
MEMORY_HEADROOM = 1.5
MEMORY_FLOOR_MB = 1024  # below ~1 GB Lambda gives a small fraction of a vCPU: inference crawls
LAMBDA_MB_PER_VCPU = names.LAMBDA_MB_PER_VCPU  # one full vCPU at 1,769 MB
#: JSON bytes per tensor element in a V2 request/response (digits, separators): an upper bound.
JSON_BYTES_PER_ELEMENT = 24
#: Per-request overhead besides the model itself (decode, validate, encode), milliseconds.
LAMBDA_OVERHEAD_MS = 2.0
SECONDS_PER_MONTH = 30 * 24 * 3600
HOURS_PER_MONTH = 730
#: us-east-1 on-demand list prices (USD), x86_64; check https://aws.amazon.com/lambda/pricing/.
LAMBDA_PRICE_PER_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
LAMBDA_PRICE_PER_REQUEST = 0.20 / 1_000_000
HTTP_API_PRICE_PER_REQUEST = 1.00 / 1_000_000
#: SageMaker real-time inference, USD per instance-hour, and vCPUs; https://aws.amazon.com/sagemaker/pricing/.
SAGEMAKER_INSTANCES = {
    "ml.m5.large": (0.115, 2), "ml.m5.xlarge": (0.23, 4), "ml.m5.2xlarge": (0.461, 8),
    "ml.c5.large": (0.102, 2), "ml.c5.xlarge": (0.204, 4), "ml.c5.2xlarge": (0.408, 8),
    "ml.g4dn.xlarge": (0.736, 4), "ml.g5.xlarge": (1.408, 4), "ml.g5.2xlarge": (1.515, 8),
}
SAGEMAKER_TARGET_UTILIZATION = 0.7
GPU_FAMILIES = ("ml.g", "ml.p", "ml.inf", "ml.trn")

#: bytes per element; BYTES (variable) is estimated at 64 bytes a string
BYTES_PER_DATATYPE = {**datatypes.ITEMSIZE, datatypes.BYTES: 64}


@functools.cache
def runtime_image_bytes() -> int:
    """Base image + the installed size of what layers/requirements.txt ships (with deps) and
    of layers/requirements-nodeps.txt (without)."""
    reqs = Path(names.__file__).with_name("requirements.txt")
    nodeps = reqs.with_name("requirements-nodeps.txt")
    seen: set[str] = set()
    total = LAMBDA_PYTHON_BASE_IMAGE_BYTES + closure_bytes(_requirements(nodeps), deps=False, seen=seen)
    return total + closure_bytes(_requirements(reqs), seen=seen)


def _requirements(path: Path) -> list[Requirement]:
    lines = path.read_text().splitlines() if path.is_file() else []
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def closure_bytes(todo: list[Requirement], *, deps: bool = True, seen: set[str] | None = None) -> int:
    """Installed size of ``todo`` (with what they depend on, unless ``deps`` is off); the
    names in ``seen`` are skipped and the counted ones added to it."""
    seen = set() if seen is None else seen
    total = 0
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in dist.files or [])
        for dep in (dist.requires or []) if deps else []:
            r = Requirement(dep)
            if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in req.extras or {""}):
                todo.append(r)
    return total


def preprocess_libraries(kind: str) -> tuple[str, ...]:
    """The runtime packages an input kind's pre-processing uses (:attr:`infra.kinds.BuildKind.libraries`;
    their closure is in every image, since layers/requirements.txt is one set: this is the share
    a model of that kind needs)."""
    from infra.kinds import kinds

    found = kinds().get(kind)
    return found.libraries if found is not None else ()


def library_bytes(kind: str) -> int:
    """Installed size of the pre-processing library for ``kind`` (as the image installs it)."""
    return closure_bytes([Requirement(n) for n in preprocess_libraries(kind)], deps=False)


def payload_bytes(tensors: list[dict[str, Any]]) -> int:
    """Upper bound of a batch-1 V2 JSON body for these tensors (dynamic dims taken as 1)."""
    total = 256
    for t in tensors:
        elements = math.prod(max(1, d) for d in t["shape"])
        total += 128 + elements * max(JSON_BYTES_PER_ELEMENT, BYTES_PER_DATATYPE.get(t["datatype"], 8))
    return total


def shape_label(shapes: dict[str, list[int]] | None) -> str:
    """``x[1,3,224,224]`` (inputs joined by spaces): what a figure was measured at."""
    return " ".join(f"{n}[{','.join(map(str, s))}]" for n, s in (shapes or {}).items()) or "no input"


def decide(checks: list[tuple[bool, str]], requested: str) -> tuple[str, list[str]]:
    """``(target, reasons)`` from Lambda's checks: ``auto`` → SageMaker when any fails (each a
    ✓/✗ line); a catalog target stands, with a warning per failed check when it is lambda."""
    fails = [why for ok, why in checks if not ok]
    if requested == "auto":
        return ("sagemaker" if fails else "lambda"), [f"{'✗' if not ok else '✓'} {why}" for ok, why in checks]
    reasons = [f"target {requested} set in the catalog"]
    if requested == "lambda":
        reasons += [f"warning: ✗ {why}" for why in fails]
    return requested, reasons


def recommend(*, artifact_bytes: int, peak_rss_mb: float, init_s: float, p99_ms: float | None,
              signature: dict[str, list[dict[str, Any]]], instance_type: str,
              requested: str, timeout_s: int, hash_s: float | None = None,
              measured_at: str = "batch 1", estimate: bool = False) -> tuple[str, list[str], dict[str, Any]]:
    """``(target, reasons, fit)`` for one model; ``fit`` is what the manifest stores.

    ``init_s`` is the whole model part of init, the artifact's sha256 check included (the
    probe measures both); ``hash_s``, when known, is that check's share, shown in the reason.
    ``measured_at`` labels the latency and memory figures with the input shapes they were
    measured at; ``estimate``: those shapes were the build's defaults, not the user's data."""
    at = f"at {measured_at}{' (estimate: no data in the catalog)' if estimate else ''}"
    image = artifact_bytes + runtime_image_bytes()
    memory_mb = max(MEMORY_FLOOR_MB, math.ceil(peak_rss_mb * MEMORY_HEADROOM / 64.0) * 64)
    req_b, resp_b = payload_bytes(signature["inputs"]), payload_bytes(signature["outputs"])
    gpu = instance_type.startswith(GPU_FAMILIES)
    checks = [
        (image <= names.LAMBDA_MAX_IMAGE_BYTES,
         f"image {image / 1024**3:.2f} GB vs Lambda's {names.LAMBDA_MAX_IMAGE_BYTES / 1024**3:.0f} GB"),
        (memory_mb <= names.LAMBDA_MAX_MEMORY_MB,
         f"needs {memory_mb} MB (peak RSS {peak_rss_mb:.0f} MB × {MEMORY_HEADROOM} {at}) "
         f"vs {names.LAMBDA_MAX_MEMORY_MB} MB"),
        (init_s <= names.LAMBDA_INIT_LIMIT_S,
         f"init {init_s:.2f} s{f' (sha256 check {hash_s:.2f} s)' if hash_s is not None else ''} "
         f"vs Lambda's {names.LAMBDA_INIT_LIMIT_S} s"),
        (p99_ms is None or p99_ms / 1000 <= names.HTTP_API_TIMEOUT_S,
         f"p99 {p99_ms:.1f} ms {at} vs HTTP API's {names.HTTP_API_TIMEOUT_S} s" if p99_ms is not None
         else "p99 unmeasured (no input ran; add example_input) vs HTTP API's "
              f"{names.HTTP_API_TIMEOUT_S} s"),
        (max(req_b, resp_b) <= names.LAMBDA_SYNC_PAYLOAD_BYTES,
         f"batch-1 request {req_b / 1024:.0f} KB / response {resp_b / 1024:.0f} KB vs 6 MB"),
        (not gpu, f"GPU required (instance_type {instance_type})" if gpu else "no GPU required"),
    ]
    target, reasons = decide(checks, requested)
    timeout = min(names.HTTP_API_TIMEOUT_S, max(timeout_s, math.ceil(init_s + 20 * (p99_ms or 0) / 1000)))
    fit = {
        "memory_mb": min(memory_mb, names.LAMBDA_MAX_MEMORY_MB), "timeout_s": timeout,
        "peak_rss_mb": round(peak_rss_mb, 1), "init_s": round(init_s, 3),
        "p99_ms": round(p99_ms, 3) if p99_ms is not None else None,
        **({"hash_s": round(hash_s, 3)} if hash_s is not None else {}),
        "image_bytes": image, "artifact_bytes": artifact_bytes,
        "request_bytes": req_b, "response_bytes": resp_b, "gpu_required": gpu,
        "instance_type": instance_type, "measured_at": measured_at, "estimate": estimate,
    }
    return target, reasons, fit


def monthly_cost(fit: dict[str, Any], p50_ms: float, rps: float, architecture: str = "x86_64",
                 memory_mb: int | None = None, idle: dict[str, list] | None = None) -> dict[str, Any]:
    """USD per month at a steady ``rps``: Lambda (GB-s + requests + HTTP API) vs SageMaker.

    ``idle`` (option → :class:`infra.build.idle.IdleItem` list) adds what each option bills
    with no traffic; ``total_usd`` is the sum and decides ``cheaper``."""
    memory = memory_mb or fit["memory_mb"]
    requests = rps * SECONDS_PER_MONTH
    slowdown = max(1.0, LAMBDA_MB_PER_VCPU / memory)  # fraction of a vCPU below 1,769 MB
    duration_s = (p50_ms * slowdown + LAMBDA_OVERHEAD_MS) / 1000
    gb_s = requests * duration_s * memory / 1024
    lam = gb_s * LAMBDA_PRICE_PER_GB_S[architecture] + requests * (LAMBDA_PRICE_PER_REQUEST + HTTP_API_PRICE_PER_REQUEST)
    instance = fit.get("instance_type", "ml.m5.large")
    hourly, vcpus = SAGEMAKER_INSTANCES.get(instance, SAGEMAKER_INSTANCES["ml.m5.large"])
    busy_vcpus = rps * (p50_ms + LAMBDA_OVERHEAD_MS) / 1000
    count = max(1, math.ceil(busy_vcpus / (vcpus * SAGEMAKER_TARGET_UTILIZATION)))
    sm = count * hourly * HOURS_PER_MONTH
    idle = idle or {}
    idle_usd = {k: sum(i.usd for i in idle.get(k, ())) for k in ("lambda", "sagemaker")}
    total = {"lambda": lam + idle_usd["lambda"], "sagemaker": sm + idle_usd["sagemaker"]}
    return {
        "rps": rps, "requests_per_month": round(requests),
        "lambda": {"usd": round(lam, 2), "memory_mb": memory, "billed_ms": round(duration_s * 1000, 2),
                   "gb_s": round(gb_s), "idle": [i.to_dict() for i in idle.get("lambda", ())],
                   "idle_usd": round(idle_usd["lambda"], 2), "total_usd": round(total["lambda"], 2)},
        "sagemaker": {"usd": round(sm, 2), "instance_type": instance, "instances": count,
                      "idle": [i.to_dict() for i in idle.get("sagemaker", ())],
                      "idle_usd": round(idle_usd["sagemaker"], 2), "total_usd": round(total["sagemaker"], 2)},
        "cheaper": "lambda" if total["lambda"] <= total["sagemaker"] else "sagemaker",
    }
