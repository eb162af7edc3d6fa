"""Load the model once per process and run it: the transport-agnostic core of every entry point.

:func:`load_model` verifies the artifact's sha256 against ``manifest.json`` *before* creating
the session (a function must refuse to serve anything but the gated build), checks the
session agrees with the manifest's signature and refuses models with non-tensor outputs
(e.g. sklearn's ZipMap ``seq(map(...))``, which has no V2 datatype; the build refuses them
too, this is defence in depth). :func:`get_model` is the process-wide instance from
``MODEL_DIR``, created at import/init by the handlers, never per request.

Session settings (see :func:`session_options`), chosen by measuring them against a *default*
``InferenceSession`` of the same file (onnxruntime's defaults: a thread per physical core,
workers spinning) through the whole API handler with SAM's event (``bench/bench_request_path.py``
on skl2onnx MLPs: 64-256-256-10 at batch 1, 64-3×1024-10 at batch 32; earlier
``bench/bench_api.py``). How to re-measure on a host: run that benchmark with the function's
CPUs (``taskset``) and no other load; its "Session settings" table gives each variant's ratio
to the default session, runs repeated and the spread shown.

* ``intra_op_num_threads`` = CPUs this process may really use: the cgroup CPU quota (v2
  ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), inside Lambda the function's
  vCPU share (memory / 1,769 MB: Lambda's guest may show 2 vCPUs to a 1,024 MB function that
  gets 0.58 of one), and the affinity mask; never the host's count.
  Measured: 1 thread was 2-6× slower on the batch-32 model (the batch-1 MLP was faster on
  1 thread: the pool hand-off costs more than its work, which is what the override is for);
  2× the CPUs gained nothing and had worse tails.
  ``MODELFN_INTRA_OP_THREADS`` overrides it.
* ``inter_op_num_threads`` = 1, sequential execution: these graphs are chains; a parallel
  executor only adds a second pool.
* Thread spinning (``session.intra_op.allow_spinning``) depends on whether the workers have
  their vCPUs to themselves (:func:`ort_spinning`). A worker that sleeps between ops must be
  woken for the next one (a futex, and on an idle VM an IPI to a halted vCPU); a spinning one
  answers at once but burns the vCPU it spins on. Measured by ``bench/bench_request_path.py``
  (table "Session settings", skl2onnx MLPs, SAM's event, variants alternating in blocks):

  - on an idle 2-vCPU AVX2 host, what a Lambda function gets (no neighbours; issue 24's
    figures), no spinning took 1.1-1.65× a default (spinning) session's time at batch 32 on
    the 3×1024 MLP: every op paid the wake-up;
  - on the shared 2-vCPU dev host (load average ~3 from other work), spinning took 1.24-1.47×
    the default session's time through the handler at batch 32, no spinning 0.60-1.35×, one
    thread 0.54-0.66×: the spinning worker takes the vCPU that the Python thread (JSON) and
    the neighbours need; at batch 1 a sleeping 2-thread pool cost 1.3-1.5× (~20 µs a run),
    spinning or one thread 0.9-1.0×.

  So spinning is on where the function's vCPUs are its own: inside Lambda (not ``sam
  local``) with 2+ threads and a whole vCPU of memory share for each (memory ≥ threads ×
  1,769 MB); with less than two vCPUs of share the pool is one thread and spinning moot. It
  is off on shared hosts: the local stack, the SageMaker container's threaded server, tests
  and benchmarks. ``MODELFN_ORT_SPINNING=0|1`` overrides the rule.
* ``ORT_ENABLE_ALL`` graph optimization: on plain Gemm+Relu MLPs BASIC/DISABLED measured
  the same within noise, but the extended fusions (attention, Conv+BN, GELU, ...) pay on
  every request of real models while their cost is paid once, in init (milliseconds here).
* CPU memory arena and memory pattern on (onnxruntime's defaults): turning either off made
  no measurable difference on these models; with them on, repeated runs reuse buffers, and
  the arena's resident peak is what the build's fit report measures as peak RSS, which
  sizes the function's memory.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from layers import datatypes, names
from layers.codec import check_shape, to_numpy_dtype
from layers.errors import BadRequest
from layers.manifest import Manifest, ManifestError, TensorSpec, read_manifest
from layers.providers import execution_providers, warn_on_fallback
from layers.servable import Servable, ServableBase

# onnxruntime's type strings for the V2 datatypes it can hold.
_ORT_TO_V2 = datatypes.FROM_ORT


def available_cpus() -> int:
    """CPUs this process can actually use: min(affinity mask, cgroup quota, Lambda's vCPU
    share), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    for quota in (_cgroup_cpu_quota(), lambda_vcpus()):
        if quota is not None:
            cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def lambda_vcpus() -> float | None:
    """Inside Lambda, the function's vCPU share (memory / 1,769 MB); None elsewhere."""
    raw = os.environ.get(names.ENV_LAMBDA_MEMORY, "").strip()
    if not raw.isdigit() or int(raw) <= 0:
        return None
    return int(raw) / names.LAMBDA_MB_PER_VCPU


def _vcpus_to_itself(threads: int) -> bool:
    """Inside Lambda (not ``sam local``): a whole vCPU of the function's share for each of 2+ threads."""
    share = lambda_vcpus()
    return share is not None and not os.environ.get(names.ENV_SAM_LOCAL) and threads >= 2 and share >= threads


def _cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPU quota in CPUs from cgroup v2 ``cpu.max`` or v1 cfs files; None when unlimited."""
    try:
        quota, period = Path(root, "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for d in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        try:
            quota_us = int(Path(root, d, "cpu.cfs_quota_us").read_text())
            period_us = int(Path(root, d, "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def intra_op_threads() -> int:
    """Threads for onnxruntime's intra-op pool: env override, else :func:`available_cpus`."""
    raw = os.environ.get(names.ENV_INTRA_OP_THREADS, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1:
            raise ManifestError(
                f"{names.ENV_INTRA_OP_THREADS}={raw!r} is not a positive integer; "
                "unset it to use the CPUs available, or set e.g. 2."
            )
        return n
    return available_cpus()


def ort_spinning(threads: int | None = None) -> bool:
    """Whether intra-op workers spin: ``MODELFN_ORT_SPINNING`` (``0``/``1``), else on only when
    the ``threads`` (default :func:`intra_op_threads`) have their vCPUs to themselves."""
    raw = os.environ.get(names.ENV_ORT_SPINNING, "").strip()
    if raw == "0":
        return False
    if raw == "1":
        return True
    if raw == "":
        return _vcpus_to_itself(intra_op_threads() if threads is None else threads)
    raise ManifestError(f"{names.ENV_ORT_SPINNING}={raw!r} must be 0 or 1; unset it for the default "
                        "(on inside Lambda when each intra-op thread has a whole vCPU, else off).")


def session_options(
    *,
    threads: int | None = None,
    spinning: bool | None = None,
    optimization: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    mem_arena: bool = True,
    mem_pattern: bool = True,
) -> ort.SessionOptions:
    """The session settings modelfn serves with (reasons in the module docstring)."""
    so = ort.SessionOptions()
    threads = threads if threads is not None else intra_op_threads()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = optimization
    so.enable_cpu_mem_arena = mem_arena
    so.enable_mem_pattern = mem_pattern
    spinning = ort_spinning(threads) if spinning is None else spinning
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    return so


@dataclass(frozen=True)
class Model(ServableBase):
    """One loaded model: its manifest, signature and onnxruntime session (a :class:`Servable`)."""

    manifest: Manifest
    session: ort.InferenceSession
    threads: int

    def __post_init__(self) -> None:
        # Per-request lookups, computed once (the request path is measured in microseconds).
        specs = {s.name: (s, to_numpy_dtype(s.datatype)) for s in self.manifest.inputs}
        object.__setattr__(self, "_inputs", specs)
        object.__setattr__(self, "_output_names", [s.name for s in self.manifest.outputs])

    def run(self, feed: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model on a ``feed`` that already passed the input checks → outputs by name.

        The checks are :meth:`validate_inputs` (numpy callers: batch, SDK) or, on the HTTP path,
        the V2 decoder (:mod:`layers.v2_wire`), which checks names, datatypes and shapes as it
        decodes and then calls :meth:`check_value`: each input is validated once, not twice.
        """
        names_out = self.validate_output_names(output_names)
        try:
            results = self.session.run(names_out, feed)
        except InvalidArgument as exc:
            raise BadRequest(f"the model rejected the inputs: {_first_line(exc)}") from exc
        return dict(zip(names_out, results, strict=True))

    def validate_inputs(
        self, inputs: Mapping[str, np.ndarray], *, allow_nonfinite: bool = False
    ) -> dict[str, np.ndarray]:
        """Names, dtypes, shapes and values of numpy ``inputs`` against the signature → the feed."""
        expected = self._inputs
        if len(inputs) != len(expected) or any(n not in expected for n in inputs):
            unknown = [n for n in inputs if n not in expected]
            if unknown:
                raise BadRequest(
                    f"unknown input(s) {unknown}; model {self.name!r} takes {list(expected)}."
                )
            missing = [n for n in expected if n not in inputs]
            raise BadRequest(f"missing input(s) {missing}; model {self.name!r} takes {list(expected)}.")
        feed = {}
        for name, (spec, want) in expected.items():
            arr = inputs[name]
            if spec.datatype != "BYTES" and arr.dtype != want:
                raise BadRequest(
                    f"input {name!r} has dtype {arr.dtype} but the model expects {spec.datatype} "
                    f"({want}); convert it before sending."
                )
            check_shape(name, arr.shape, spec)
            feed[name] = self.check_value(spec, arr, allow_nonfinite=allow_nonfinite)
        return feed

    def check_value(self, spec: TensorSpec, arr: np.ndarray, *, allow_nonfinite: bool = False) -> np.ndarray:
        """The value checks of one input whose name, datatype and shape already fit ``spec``:
        BYTES become text (see :func:`_as_text`); NaN/Inf are refused unless allowed."""
        if spec.datatype == "BYTES":
            return _as_text(spec.name, arr)
        if not allow_nonfinite and arr.dtype.kind == "f" and not _all_finite(arr):
            raise BadRequest(
                f"input {spec.name!r} contains NaN or Infinity; send finite numbers, or set the "
                "request parameter \"allow_nonfinite\": true if the model handles them."
            )
        return arr


def _all_finite(arr: np.ndarray) -> bool:
    """No NaN/Inf in ``arr``. One reduction decides almost always: any NaN/Inf makes it
    non-finite, so only a finite result is conclusive; else check element-wise (a sum or
    square that overflowed). Small arrays (a request's few rows) reduce with ``dot`` (the
    sum of squares): its BLAS call stays fast right after ``session.run`` has filled the
    caches, where the ufunc reduction's dispatch measured ~20 µs on a 1×64 request
    (``bench/bench_request_path.py``); large ones with the float64 ufunc sum (OpenBLAS's dot
    would start its own thread pool next to onnxruntime's above ~10k elements)."""
    flat = arr.ravel()
    total = flat.dot(flat) if flat.size <= _DOT_MAX else _add(flat, dtype=np.float64)
    return math.isfinite(total) or bool(np.isfinite(arr).all())


_add = np.add.reduce
_DOT_MAX = 8192


def _as_text(name: str, arr: np.ndarray) -> np.ndarray:
    """BYTES input → object array of ``str``: onnxruntime string tensors hold text, and it
    would silently turn a ``bytes`` element into its repr (``"b'...'"``)."""
    if arr.dtype.kind not in "OUS":
        raise BadRequest(f"input {name!r} must be BYTES (strings); got {arr.dtype}.")
    if arr.dtype.kind == "U":
        return arr.astype(object)
    flat = arr.ravel().tolist()
    if all(isinstance(v, str) for v in flat):
        return arr
    out = np.empty(len(flat), dtype=object)
    try:
        out[:] = [v if isinstance(v, str) else bytes(v).decode("utf-8") for v in flat]
    except (UnicodeDecodeError, TypeError):
        raise BadRequest(
            f"input {name!r} holds an element that is not UTF-8 text; this model's BYTES inputs "
            "are strings, so send UTF-8 text."
        ) from None
    return out.reshape(arr.shape)


def load_model(model_dir: str | Path, manifest: Manifest | None = None, **options: Any) -> Servable:
    """Verify ``model_dir``'s artifact, then create its one session (``options`` → session_options).

    The sha256 check comes first, on this thread: hashing on a second thread while onnxruntime
    loads the file measured 1.15× *slower* than one after the other on the shared 2-vCPU
    machine (``bench/bench_coldstart.py`` at the time; no idle CPU to overlap on), so it stays
    sequential and the fit report's init check counts both. A caller passing ``manifest`` has
    verified it.

    A manifest with a processing block yields a :class:`layers.processing.processed.ProcessedModel`
    (the same :class:`Servable` interface: text/image in, label/scores out) around the raw model."""
    manifest = manifest or read_manifest(model_dir, verify=True)
    if manifest.extra.get("task") == "generation":
        from layers.generation.engine import load as load_generation

        return load_generation(model_dir, manifest, threads=options.get("threads") or intra_op_threads())
    if names.MANIFEST_PROCESSING in manifest.extra:
        from layers.processing.processed import ProcessedModel

        return ProcessedModel.load(model_dir, manifest, load_model, **options)
    path = Path(model_dir) / names.MODEL_FILE
    threads = options.pop("threads", None) or intra_op_threads()
    so = session_options(threads=threads, **options)
    providers = execution_providers()
    try:
        # optimizers the build measured the graph faster without (infra/build/ort_offline.py)
        disabled = manifest.extra.get(names.MANIFEST_GRAPH_OPTIMIZATION, {}).get(names.DISABLED_OPTIMIZERS, [])
        extra = {"disabled_optimizers": list(disabled)} if disabled else {}
        session = ort.InferenceSession(str(path), sess_options=so, providers=providers, **extra)
    except Exception as exc:
        raise ManifestError(
            f"onnxruntime cannot load {path}: {_first_line(exc).rstrip('.')}. Rebuild it with `modelfn build`."
        ) from exc
    warn_on_fallback(session, providers)
    _check_signature(manifest, session)
    return Model(manifest=manifest, session=session, threads=threads)


def _check_signature(manifest: Manifest, session: ort.InferenceSession) -> None:
    for kind, specs, metas in (("input", manifest.inputs, session.get_inputs()),
                               ("output", manifest.outputs, session.get_outputs())):
        for meta in metas:
            if meta.type not in _ORT_TO_V2:
                raise ManifestError(
                    f"model {manifest.name!r} {kind} {meta.name!r} has type {meta.type}, which is not "
                    "a tensor and has no V2 datatype (sklearn classifiers emit seq(map) via ZipMap). "
                    "Rebuild with tensor outputs (skl2onnx option zipmap=False)."
                )
        by_name = {m.name: _ORT_TO_V2[m.type] for m in metas}
        for spec in specs:
            if by_name.get(spec.name) != spec.datatype:
                raise ManifestError(
                    f"manifest {kind} {spec.name}:{spec.datatype} does not match the model's "
                    f"{kind}s {by_name}; rebuild with `modelfn build`."
                )
        if kind == "input" and len(specs) != len(metas):
            raise ManifestError(
                f"manifest lists inputs {[s.name for s in specs]} but the model takes "
                f"{list(by_name)}; rebuild with `modelfn build`."
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_model: Servable | None = None
_lock = threading.Lock()


def get_model() -> Servable:
    """The process-wide model from ``MODEL_DIR``, loaded on first call (at handler import)."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                model_dir = os.environ.get(names.ENV_MODEL_DIR)
                if not model_dir:
                    raise ManifestError(
                        f"{names.ENV_MODEL_DIR} is not set; set it to a directory written by "
                        "`modelfn build` (build/models/<name>)."
                    )
                _model = load_model(model_dir)
    return _model


def reset_model() -> None:
    """Forget the process-wide model (tests, and a server reloading a new MODEL_DIR)."""
    global _model
    with _lock:
        _model = None
