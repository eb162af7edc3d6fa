"""Run a model's training entry point locally, exactly as the SageMaker training job runs it.

A temporary tree mirrors the container's ``/opt/ml`` (``input/config/hyperparameters.json``
with every value a string, as SageMaker writes it; ``input/data/train`` → the data folder;
``model/``; ``output/``), the SageMaker environment variables point into it, and
``python -m functions.training.train train`` (the training image's entrypoint) runs in a
child process with the catalog's directory as the code directory. CPU here; the user's code
picks CUDA where torch finds it. ``training.max_runtime_s`` is the timeout, like the job's
stopping condition.

``training.instance_count: N`` runs N such processes at once, as SageMaker runs the image on
N hosts: torchrun's ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` (a free port on
127.0.0.1) and ``SM_HOSTS``/``SM_CURRENT_HOST`` set for each, the process group on gloo.
Rank 0 writes the job's ``/opt/ml/model``; the others get scratch model directories; any
rank failing fails the job (the others are stopped).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.catalog import ModelSpec
from layers import names

REPO_ROOT = Path(__file__).resolve().parents[2]
LineSink = Callable[[str], None]


class TrainingError(RuntimeError):
    """The training run failed; the message is the job's failure reason."""

    def __init__(self, reason: str, log: Path | None = None) -> None:
        super().__init__(reason)
        self.reason, self.log = reason, log


@dataclass(frozen=True)
class TrainingRun:
    job: str
    model_dir: Path
    """The job's ``/opt/ml/model``: the trained artifact + ``training.json``."""
    report: dict[str, Any]
    log: Path
    data_dir: Path

    @property
    def artifact(self) -> Path:
        return self.model_dir / self.report["artifact"]


def sagemaker_hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """What CreateTrainingJob sends: every value a string (JSON for non-strings)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``--hyperparameters k=v …``; values decode like the container does (JSON, else string)."""
    from functions.training.train import decode_hyperparameters

    raw = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--hyperparameters takes key=value pairs; got {pair!r}")
        raw[key.strip()] = value
    return decode_hyperparameters(raw)


def data_dir_for(spec: ModelSpec, override: str | Path | None) -> Path:
    """``--data`` if given, else the catalog's local ``training.data`` folder."""
    if override is not None:
        return Path(override).resolve()
    training = spec.training
    assert training is not None
    if training.data is None:
        raise TrainingError(f"model {spec.name!r} has no training.data; pass --data DIR (a folder of "
                            "training files) or set training.data in the catalog")
    if training.data_is_s3:
        raise TrainingError(f"model {spec.name!r}: training.data is {training.data} (S3, used by the "
                            "SageMaker job); locally pass --data DIR with a copy of that data")
    return Path(training.data)


def run_local(spec: ModelSpec, root: Path, *, data_dir: Path, work: Path,
              hyperparameters: Mapping[str, Any] | None = None, job: str | None = None,
              on_line: LineSink | None = None) -> TrainingRun:
    """Train ``spec`` on ``data_dir`` in ``work``; raise :class:`TrainingError` with the reason."""
    training = spec.training
    assert training is not None, "run_local needs a model with training:"
    job = job or f"{spec.name}-local-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    ml = work / "opt" / "ml"
    config, channel = ml / "input" / "config", ml / "input" / "data"
    model_dir, output = ml / "model", ml / "output"
    for d in (config, channel, model_dir, output):
        d.mkdir(parents=True, exist_ok=True)
    hp = {**training.hyperparameters, **(hyperparameters or {})}
    (config / "hyperparameters.json").write_text(json.dumps(
        {**sagemaker_hyperparameters(hp), names.HP_ENTRY_POINT: training.entry_point}))
    train_channel = channel / "train"
    if data_dir.is_dir():
        train_channel.symlink_to(data_dir.resolve(), target_is_directory=True)
    code_dir, _, _ = training.entry(root)
    env = {**os.environ,
           "SM_INPUT_CONFIG_DIR": str(config), "SM_CHANNEL_TRAIN": str(train_channel),
           "SM_CHANNELS": json.dumps(["train"]), "SM_MODEL_DIR": str(model_dir),
           "SM_OUTPUT_DIR": str(output), "SM_OUTPUT_DATA_DIR": str(output / "data"),
           "SM_HPS": json.dumps(hp), "TRAINING_JOB_NAME": job,
           names.ENV_TRAINING_CODE_DIR: str(root),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), str(code_dir),
                                                        os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    log = work / "training.log"
    count = training.instance_count
    peers = _start_peers(env, work, count) if count > 1 else []
    if count > 1:
        env.update(_rank_env(0, count, peers[0][2] if peers else 0))
    try:
        code = _run([sys.executable, "-m", "functions.training.train", "train"], env=env, cwd=work,
                    log=log, timeout_s=training.max_runtime_s, on_line=on_line)
    except subprocess.TimeoutExpired:
        _stop_peers(peers)
        raise TrainingError(f"training ran past training.max_runtime_s ({training.max_runtime_s} s) "
                            "and was stopped, as the SageMaker job would be; raise it or train less", log) from None
    if code != 0:
        failure = output / "failure"
        reason = failure.read_text().strip() if failure.is_file() else f"exit status {code}, no failure reason"
        if peers and (first := _finish_peers(peers, timeout_s=5, reported_only=True)) is not None:  # the cause, not its echo
            reason = f"{first}; rank 0 then: {reason}"
        raise TrainingError(reason, log)
    if (bad := _finish_peers(peers)) is not None:
        raise TrainingError(bad, log)
    report = json.loads((model_dir / names.TRAINING_REPORT_FILE).read_text())
    report["data"]["location"] = str(data_dir)
    return TrainingRun(job=job, model_dir=model_dir, report=report, log=log, data_dir=data_dir)


def _rank_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    hosts = [f"algo-{i + 1}" for i in range(world_size)]
    return {names.ENV_RANK: str(rank), names.ENV_LOCAL_RANK: "0", names.ENV_WORLD_SIZE: str(world_size),
            names.ENV_MASTER_ADDR: "127.0.0.1", names.ENV_MASTER_PORT: str(port),
            "SM_HOSTS": json.dumps(hosts), "SM_CURRENT_HOST": hosts[rank],
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_peers(env: dict[str, str], work: Path, count: int) -> list[tuple[subprocess.Popen, Path, int]]:
    """Ranks 1..N-1, each with its own scratch model and output directories and log."""
    port, peers = _free_port(), []
    for rank in range(1, count):
        scratch = work / f"rank-{rank}"
        for d in ("model", "output"):
            (scratch / d).mkdir(parents=True, exist_ok=True)
        peer_env = {**env, **_rank_env(rank, count, port), "SM_MODEL_DIR": str(scratch / "model"),
                    "SM_OUTPUT_DIR": str(scratch / "output"), "SM_OUTPUT_DATA_DIR": str(scratch / "output" / "data")}
        log = scratch / "training.log"
        with open(log, "w") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "functions.training.train", "train"], env=peer_env,
                                    cwd=work, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        peers.append((proc, scratch, port))
    return peers


def _stop_peers(peers: list[tuple[subprocess.Popen, Path, int]]) -> None:
    import signal

    for proc, _, _ in peers:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _finish_peers(peers: list[tuple[subprocess.Popen, Path, int]], timeout_s: float = 60,
                  *, reported_only: bool = False) -> str | None:
    """Wait for ranks 1..N-1 after rank 0 finished; the first failure's reason, else None
    (``reported_only``: only a rank that wrote its failure reason counts)."""
    deadline = time.monotonic() + timeout_s
    reason = None
    for rank, (proc, scratch, _) in enumerate(peers, start=1):
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = None
        failure = scratch / "output" / "failure"
        if code != 0 and reason is None and (failure.is_file() or not reported_only):
            why = failure.read_text().strip() if failure.is_file() else (
                "did not finish after rank 0" if code is None else f"exit status {code}")
            reason = f"rank {rank} failed: {why} (log: {scratch / 'training.log'})"
    _stop_peers(peers)
    return reason


def _run(cmd: list[str], *, env: dict, cwd: Path, log: Path, timeout_s: float, on_line: LineSink | None) -> int:
    deadline = time.monotonic() + timeout_s
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        assert proc.stdout is not None
        import threading

        def pump() -> None:
            for line in proc.stdout:
                sink.write(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            import signal

            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            reader.join(5)
    return code
