"""modelfn next to what users would deploy instead: transformers' ``pipeline("text-classification")``
in a function (what the aws-samples Hugging Face-on-Lambda setup runs) against modelfn's API
handler, on the same saved DistilBERT-sized classifier, in one run on one host.

Model: ``DistilBertForSequenceClassification`` made from a config (6 layers, hidden 768, 12 heads,
FFN 3072; random weights with the head fitted to a synthetic two-topic task, so labels mean
something), a WordPiece tokenizer, saved with ``save_pretrained`` (``bench.bench_transformers``
makes it). modelfn builds it twice from ``source: hf:<dir>`` with the tokenizer and softmax:
``quantize: none`` (fp32) and ``quantize: auto`` behind a top-1 agreement ≥ 99.5% gate on 200
texts (int8 if the gate passes; the row says what shipped).

Each function is a fresh Python process pinned to the same single CPU (one vCPU, what Lambda
gives at 1,769 MB; ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1769`` as Lambda sets it):

* cold start: process start → first answer, best and median of ``COLD`` starts each, the
  contenders alternating; modelfn's split into imports, init (session + tokenizer) and the
  first request. modelfn starts from its model directory as its image holds it (the staged
  files and ``verified.json``, :func:`as_in_image`) with ``LAMBDA_TASK_ROOT`` set as in
  Lambda, so init trusts the sha256 checked when the image was staged rather than hashing
  the artifact at every start (``layers.manifest.trusted_by_image`` says why that is safe);
* warm p50 for 1 and 8 sentences: ``ROUNDS`` rounds, the live processes taking turns, the
  spread of the per-round p50s shown;
* labels of all 200 texts compared with the pipeline's;
* installed runtime size: the packages each function imports (transformers + torch and their
  requirements; modelfn's ``layers/requirements*.txt`` closure), from this venv's files.

``MODELFN_BENCH_WORK=DIR`` keeps the model and builds between runs (a build is reused while its
inputs and the build code are unchanged; with ``MODELFN_BENCH_REUSE_BUILDS=1`` whatever is
there is used as built, each row naming what it ships and when it was built).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.bench_transformers import CHILD_LOOP as COMMAND_LOOP
from bench.bench_transformers import (
    GATE,
    PIPELINE_SETUP,
    Child,
    dist_closure_bytes,
    make_distilbert,
)
from bench.report import Report, host_line, percentile_ms
from layers import names

REPO = Path(__file__).resolve().parents[1]
COLD = 3
ROUNDS, PER_ROUND = 6, 15
EVENT = REPO / "tests" / "events" / "sam_http_api_proxy.json"

#: The modelfn function: Lambda's handler fed SAM's generated HTTP API event, with the time
#: its imports and its init took (reported on the first line with the first answer).
MODELFN_SETUP = """
import base64, json, os, sys, time
t_start = time.perf_counter()
real, sys.stdout = sys.stdout, open(os.devnull, "w")
import numpy, onnxruntime, tokenizers, aws_lambda_powertools.logging, aws_lambda_powertools.metrics
t_imports = time.perf_counter()
from functions.api.handler import handler
t_init = time.perf_counter()
class Ctx:
    function_name = "bench"; memory_limit_in_mb = 1769; aws_request_id = "bench"; function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    def get_remaining_time_in_millis(self): return 30000
event = json.loads(open(sys.argv[3]).read())
event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v2/models/{sys.argv[1]}/infer"
event["isBase64Encoded"] = True
def call(texts):
    body = json.dumps({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]})
    event["body"] = base64.b64encode(body.encode()).decode()
    r = handler(event, Ctx())
    return next(o["data"] for o in json.loads(r["body"])["outputs"] if o["name"] == "label")
"""

#: The rest of either child: the first answer with the phases, then bench_transformers' command loop.
CHILD_LOOP = """
t0 = time.perf_counter()
first = call([sys.argv[2]])
t_first = time.perf_counter() - t0
phases = {"imports": t_imports - t_start, "init": t_init - t_imports} if "t_init" in globals() else {}
real.write(json.dumps({"labels": first, "phases": {**phases, "first request": t_first}}) + "\\n"); real.flush()
""" + COMMAND_LOOP[COMMAND_LOOP.index("for line in sys.stdin"):]


class Timed(Child):
    """A :class:`bench.bench_transformers.Child` that keeps the phases its first line reports."""

    def _read(self) -> dict:
        doc = super()._read()
        if "phases" in doc:
            self.phases: dict[str, float] = doc["phases"]
        return doc


@dataclass
class Built:
    """The parts of a :class:`infra.build.BuildResult` this benchmark reads."""

    name: str
    model_dir: Path
    manifest: dict


def texts(root: Path) -> list[str]:
    return (root / "distil_val.txt").read_text().splitlines()


def build(root: Path) -> dict:
    import yaml

    from infra.build import build_catalog
    from infra.catalog import load_catalog

    if not (root / "distilbert" / "config.json").is_file():
        make_distilbert(root)
    text = {"source": "hf:distilbert", "validation": "distil_val.txt", "calibration": "distil_cal.txt",
            "preprocess": {"tokenizer": "distilbert", "max_length": 128, "padding": "longest", "truncation": True},
            "postprocess": {"softmax": True}, "auth": "none", "target": "lambda"}
    entries = [{"name": "distil-fp32", **text, "quantize": "none"},
               {"name": "distil-int8", **text, "quantize": "auto", "tolerance": {"top1_agreement": GATE}}]
    (root / "models.yaml").write_text(yaml.safe_dump({"models": entries}, sort_keys=False))
    if os.environ.get("MODELFN_BENCH_REUSE_BUILDS") == "1":  # what is in the work dir, as built then
        dirs = {e["name"]: root / "build" / "models" / e["name"] for e in entries}
        if all((d / "manifest.json").is_file() for d in dirs.values()):
            return {n: Built(n, d, json.loads((d / "manifest.json").read_text())) for n, d in dirs.items()}
    t0 = time.perf_counter()
    results = build_catalog(load_catalog(root / "models.yaml"), root / "build")
    print(f"builds ready in {time.perf_counter() - t0:.0f} s", flush=True)
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"build failed: {failed}")
    return {r.name: r for r in results}


def as_in_image(root: Path, model_dir: Path) -> Path:
    """``model_dir`` as the function's image holds it: the files image staging ships and the
    ``verified.json`` it writes (:func:`infra.targets.staging.stage_model_image`), so the child
    starts as in Lambda (``LAMBDA_TASK_ROOT`` set), where init trusts the digest the image was
    staged with instead of hashing the artifact again."""
    from infra.targets.staging import model_files
    from layers.manifest import verified_marker

    dest = root / "image-model" / model_dir.name
    shutil.rmtree(dest, ignore_errors=True)
    for fname in model_files(model_dir):
        (dest / fname).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model_dir / fname, dest / fname)
    (dest / names.VERIFIED_FILE).write_bytes(verified_marker(model_dir))
    return dest


def side_by_side(report: Report, root: Path, built: dict) -> dict[str, tuple[float, float, float]]:
    val = texts(root)
    sentences = val[:8]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "_X_AMZN"))},
           "PYTHONPATH": str(REPO), "POWERTOOLS_TRACE_DISABLED": "true", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    base = "transformers pipeline"
    contenders = {base: ([sys.executable, "-c", PIPELINE_SETUP + CHILD_LOOP, str(root / "distilbert"), sentences[0]],
                         env)}
    for variant in ("int8", "fp32"):
        r = built[f"distil-{variant}"]
        q = r.manifest["quantization"]
        label = f"modelfn API handler, {'shipped by quantize: auto: ' + q['mode'] if variant == 'int8' else 'fp32'}"
        contenders[label] = ([sys.executable, "-c", MODELFN_SETUP + CHILD_LOOP, r.name, sentences[0], str(EVENT)],
                             {**env, "MODEL_DIR": str(as_in_image(root, r.model_dir)),
                              names.ENV_LAMBDA_TASK_ROOT: str(REPO)})
    cold: dict[str, list[float]] = {k: [] for k in contenders}
    phases: dict[str, list[dict]] = {k: [] for k in contenders}
    live: dict[str, Timed] = {}
    for attempt in range(COLD):  # cold starts alternating; the last set stays live
        for name, (argv, cenv) in contenders.items():
            c = Timed(argv, cenv)
            cold[name].append(c.cold_s)
            phases[name].append(getattr(c, "phases", {}))
            if attempt == COLD - 1:
                live[name] = c
            else:
                c.close()
    try:
        labels = {k: c.ask(labels=True, texts=val)["labels"] for k, c in live.items()}
        per_round: dict[str, dict[int, list[float]]] = {k: {1: [], 8: []} for k in live}
        for _ in range(ROUNDS):
            for k, c in live.items():
                for n in (1, 8):
                    times = c.ask(texts=sentences[:n], repeat=PER_ROUND if n == 1 else PER_ROUND // 3)["times"]
                    per_round[k][n].append(percentile_ms(times, 50))
    finally:
        for c in live.values():
            c.close()
    pipe_size, pipe_dists = dist_closure_bytes(["transformers", "torch"])
    reqs = {f: [line.split("#")[0].strip() for line in (REPO / "layers" / f).read_text().splitlines()
                if line.split("#")[0].strip()] for f in ("requirements.txt", "requirements-nodeps.txt")}
    fn_size, fn_dists = dist_closure_bytes(reqs["requirements.txt"], reqs["requirements-nodeps.txt"])
    p50 = {k: {n: statistics.median(v[n]) for n in (1, 8)} for k, v in per_round.items()}
    rows, ratios = [], {}
    for k in live:
        size = pipe_size if k == base else fn_size
        agree = float(np.mean([a == b for a, b in zip(labels[k], labels[base], strict=True)]))
        c1 = p50[k][1] / p50[base][1]
        rows.append([k, min(cold[k]), statistics.median(cold[k]), min(cold[k]) / min(cold[base]),
                     _spread(per_round[k][1]), c1, _spread(per_round[k][8]), p50[k][8] / p50[base][8],
                     size / 1e6, size / pipe_size, agree])
        ratios[k] = (min(cold[k]) / min(cold[base]), c1, p50[k][8] / p50[base][8])
    report.table(f"transformers pipeline vs modelfn on the same saved DistilBERT-sized classifier, one CPU each "
                 f"(cold: best and median of {COLD} fresh processes; warm: median (min–max) of {ROUNDS} rounds' p50)",
                 ["function", "cold start s (best)", "cold s (median)", "cold ×pipeline", "warm 1 sentence ms",
                  "1 sentence ×pipeline", "warm 8 sentences ms", "8 sentences ×pipeline", "runtime packages MB",
                  "size ×pipeline", "labels = pipeline's (200 texts)"], rows)
    split = []
    for k in contenders:
        if k == base:
            continue
        best = min(range(COLD), key=lambda i: cold[k][i])
        ph = phases[k][best]
        split.append([k, cold[k][best], ph.get("imports"), ph.get("init"), ph.get("first request"),
                      cold[k][best] - sum(ph.values())])
    report.table("modelfn's cold start, the best start split (s)",
                 ["function", "process start → first answer", "imports (numpy, onnxruntime, tokenizers, Powertools)",
                  "init (session, tokenizer; digest checked when the image was staged)", "first request", "interpreter start + rest"], split)
    for variant in ("int8", "fp32"):
        m = built[f"distil-{variant}"].manifest
        q = m["quantization"]
        report.note(f"distil-{variant}: shipped {q['mode']}"
                    f"{' (fallback: ' + q['fallback_reason'] + ')' if q.get('fallback_reason') else ''}, "
                    f"{m['metrics']['shipped']['size_bytes'] / 1e6:.1f} MB "
                    f"(fp32 {m['metrics']['fp32']['size_bytes'] / 1e6:.1f} MB), built {m.get('built_at', '?')}.")
    report.note("Goals (issue 24): warm p50 for one sentence ≤ 0.2× the pipeline's at equal labels, cold start "
                f"≤ 0.1×. Runtime packages: the pipeline's closure of transformers + torch ({len(pipe_dists)} "
                f"distributions) vs modelfn's layers/requirements*.txt closure ({', '.join(fn_dists)}); installed "
                f"files in this venv (Python {sys.version_info.major}.{sys.version_info.minor}, x86_64), not "
                "counting the model.")
    return ratios


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def main() -> None:
    work = os.environ.get("MODELFN_BENCH_WORK")
    report = Report("pipeline_vs_modelfn", "transformers pipeline vs modelfn, same saved DistilBERT-sized model")
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(work) if work else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        built = build(root)
        ratios = side_by_side(report, root, built)
    report.note(f"Load average (1/5/15 min) at the start: {' / '.join(f'{v:.1f}' for v in load_start)}. "
                + host_line())
    report.write()
    print(json.dumps(ratios, indent=1))


if __name__ == "__main__":
    main()
