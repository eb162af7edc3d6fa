"""``python -m infra.build.probe MODEL FEEDS``: what a fresh function process would spend.

Prints one JSON line: ``init_s`` (the cold start's model part: verify the artifact's sha256
as every function does at init, import onnxruntime, create the session), ``hash_s`` (the
sha256 part of it), ``peak_rss_mb`` after one batch-1 inference (after loading only when
FEEDS is ``-``: no input runs on the model), ``baseline_rss_mb`` (the interpreter before
onnxruntime), ``ran``. Runs alone so nothing else inflates the figures. The file was just
written by the build, so it is read from the page cache: on Lambda the first read of an
image layer is slower, which the fit check's margin has to absorb.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _rss_mb() -> float:
    """This process's RSS high-water mark. /proc's VmHWM starts fresh at exec; ru_maxrss
    would carry the parent's (the build's) peak across fork+exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    scale = 1024.0 if sys.platform != "darwin" else 1024.0**2  # KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _preprocessor_init(processing_path: str) -> float:
    """Seconds to import the input kind's library (tokenizer, image decoder) and build the
    model's pre-processor, as the function's init does (layers/processing), plus running its
    ``probe_items``; 0 without pre-processing."""
    with open(processing_path) as f:
        spec = json.load(f)
    pre, raw_inputs = spec["block"].get("preprocess"), [t["name"] for t in spec["block"]["model_signature"]["inputs"]]
    if pre is None:
        return 0.0
    from pathlib import Path

    t0 = time.perf_counter()
    from layers.kinds import input_kind

    kind = input_kind(pre["kind"])
    preprocessor = kind.preprocessor(pre, {n: Path(p) for n, p in spec["files"].items()}, raw_inputs)
    if kind.probe_items:
        preprocessor(list(kind.probe_items))
    return time.perf_counter() - t0


def main(model: str, feeds_path: str, processing_path: str | None = None) -> None:
    import numpy as np

    feeds = None
    if feeds_path != "-":  # "-": no input runs on this model; measure the load alone
        with np.load(feeds_path, allow_pickle=False) as z:
            feeds = {k: z[k] for k in z.files}
    from layers.manifest import sha256_file  # stdlib only: what the function's init runs

    baseline = _rss_mb()
    t0 = time.perf_counter()
    sha256_file(model)
    hash_s = time.perf_counter() - t0
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    preprocess_s = _preprocessor_init(processing_path) if processing_path else 0.0
    init_s = time.perf_counter() - t0
    if feeds is not None:
        sess.run(None, feeds)
    print(json.dumps({"init_s": round(init_s, 4), "hash_s": round(hash_s, 4), "peak_rss_mb": round(_rss_mb(), 1),
                      "baseline_rss_mb": round(baseline, 1), "ran": feeds is not None,
                      "preprocess_init_s": round(preprocess_s, 4)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
