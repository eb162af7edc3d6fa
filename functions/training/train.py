"""SageMaker training entry point: run the user's own training function under SageMaker's contract.

The training image runs ``python -m functions.training.train train`` (SageMaker appends
``train``); ``modelfn train`` runs the same module locally in a temporary ``/opt/ml``-like
tree. The contract, each path overridable by SageMaker's env var (or a flag, for tests):

- hyperparameters: ``$SM_INPUT_CONFIG_DIR/hyperparameters.json`` (SageMaker sends every value
  as a string; JSON numbers, booleans, lists and objects are decoded back, anything else
  stays a string). Keys ``modelfn_*`` are modelfn's own and are not passed on.
- training data: the ``train`` channel, ``$SM_CHANNEL_TRAIN`` (``/opt/ml/input/data/train``).
  Missing or empty, the job fails; there is no synthetic fallback.
- the user's code: ``$MODELFN_ENTRY_POINT`` or hyperparameter ``modelfn_entry_point``:
  ``module:function`` or ``script.py[:function]`` (default function ``train``), imported
  from ``$MODELFN_CODE_DIR``, else the ``code`` channel, else ``/opt/ml/code``.
- the call: ``fn(data_dir: Path, hyperparameters: dict, model_dir: Path)``. It returns a
  ``torch.nn.Module`` (saved whole as ``model.pt``, on CPU), a fitted sklearn estimator
  (``model.joblib``), or ``None`` after writing ``model.onnx`` into ``model_dir``
  (``$SM_MODEL_DIR``, ``/opt/ml/model``). The build pipeline converts, quantizes and gates it.
- ``training.json`` in ``model_dir``: entry point, hyperparameters, data fingerprint, device.
- data-parallel (``training.instance_count: N``): every instance runs this module with
  torchrun's variables set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
  ``MASTER_PORT``; on a SageMaker multi-instance job derived from ``SM_HOSTS`` /
  ``SM_CURRENT_HOST``: rank = the host's place in the sorted list, rank 0's host is the
  master, port 29500; locally ``modelfn train`` sets them for N processes). With torch
  installed the default process group is initialized before the entry point is called
  (``nccl`` on CUDA, else ``gloo``), so the entry point wraps its module in
  ``DistributedDataParallel`` and reads ``torch.distributed.get_rank()/get_world_size()``
  (or the env vars) to take its shard of the data. Only rank 0's result is saved (a returned
  DDP wrapper is unwrapped); the other ranks' results are discarded. ``training.json`` says
  ``world_size`` and ``processes_per_instance``.
- several GPUs per instance: when this module starts as an instance's one process (no
  torchrun variables yet) and the instance has G > 1 GPUs (SageMaker's ``SM_NUM_GPUS``, else
  ``torch.cuda.device_count()``), it relaunches itself through torchrun
  (``python -m torch.distributed.run --nnodes=N --nproc_per_node=G --node_rank=<host rank>
  --master_addr=<rank 0's host> --master_port=29500 -m functions.training.train …``): one
  process per GPU, ``WORLD_SIZE`` = N × G, ``RANK`` = host rank × G + ``LOCAL_RANK``, and each
  process's CUDA device is ``LOCAL_RANK`` (set before the entry point is called, so
  ``model.cuda()`` lands on its own GPU). The job fails when any process fails.
- failure: ``$SM_OUTPUT_DIR/failure`` (``/opt/ml/output/failure``) holds the reason, which
  DescribeTrainingJob shows as ``FailureReason``; the exit status is 1.

Runtime code: stdlib only at import; torch and joblib are imported only when a result needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import os
import platform
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layers import names

DEFAULTS = {
    "config_dir": ("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"),
    "data_dir": ("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"),
    "model_dir": ("SM_MODEL_DIR", "/opt/ml/model"),
    "output_dir": ("SM_OUTPUT_DIR", "/opt/ml/output"),
}
DEFAULT_CODE_DIR = "/opt/ml/code"
#: SageMaker shows at most this much of the failure file as FailureReason.
FAILURE_LIMIT = 1024
MODULE_ENTRY_RE = re.compile(r"^(?P<module>[A-Za-z_][\w.]*):(?P<func>[A-Za-z_]\w*)$")
SCRIPT_ENTRY_RE = re.compile(r"^(?P<path>[^:]+\.py)(?::(?P<func>[A-Za-z_]\w*))?$")


class TrainingFailed(Exception):
    """The job cannot succeed as configured; the message says what to change."""


@dataclass(frozen=True)
class Fingerprint:
    """The training data, identified: sha256 over every file's relative path and content."""

    sha256: str
    files: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "files": self.files, "bytes": self.bytes}


def data_files(data_dir: Path) -> list[Path]:
    """Every regular, non-hidden file under ``data_dir`` (recursively), in a stable order."""
    return sorted(p for p in data_dir.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(data_dir).parts))


def fingerprint(data_dir: Path) -> Fingerprint:
    outer, total = hashlib.sha256(), 0
    files = data_files(data_dir)
    for f in files:
        inner = hashlib.sha256()
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                inner.update(block)
                total += len(block)
        outer.update(f"{f.relative_to(data_dir).as_posix()}\0{inner.hexdigest()}\n".encode())
    return Fingerprint(outer.hexdigest(), len(files), total)


def decode_hyperparameters(raw: dict[str, Any]) -> dict[str, Any]:
    """SageMaker's all-strings hyperparameters back to numbers/booleans where they are JSON."""
    decoded = {}
    for key, value in raw.items():
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        decoded[key] = value
    return decoded


def read_hyperparameters(config_dir: Path) -> dict[str, Any]:
    path = config_dir / "hyperparameters.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise TrainingFailed(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise TrainingFailed(f"{path} must hold a JSON object of hyperparameters")
    return decode_hyperparameters(raw)


def check_data(data_dir: Path) -> None:
    how = ("put the training files under the model's training.data (an S3 prefix on AWS, "
           "s3://<bucket>/<model>/train/) or pass `modelfn train --data DIR` locally")
    if not data_dir.is_dir():
        raise TrainingFailed(f"no training data: the 'train' channel {data_dir} does not exist; {how}")
    if not data_files(data_dir):
        raise TrainingFailed(f"no training data: the 'train' channel {data_dir.resolve()} holds no files; {how}")


def load_entry_point(entry: str, code_dir: Path):
    """Import the user's training function from ``code_dir``."""
    if (s := SCRIPT_ENTRY_RE.match(entry)):
        script = Path(s["path"])
        script = script if script.is_absolute() else code_dir / script
        if not script.is_file():
            raise TrainingFailed(f"entry point script {script} does not exist; fix training.entry_point")
        directory, module, func = script.parent, script.stem, s["func"] or "train"
    elif (m := MODULE_ENTRY_RE.match(entry)):
        directory, module, func = code_dir, m["module"], m["func"]
    else:
        raise TrainingFailed(f"entry point {entry!r} is neither 'module:function' nor 'script.py[:function]'")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))  # also lets torch.load find the user's classes later
    try:
        fn = getattr(importlib.import_module(module), func)
    except ImportError as exc:
        raise TrainingFailed(f"cannot import {module!r} from {directory} for entry point {entry!r} "
                             f"({type(exc).__name__}: {exc})") from exc
    except AttributeError:
        raise TrainingFailed(f"module {module!r} has no function {func!r} (entry point {entry!r})") from None
    if not callable(fn):
        raise TrainingFailed(f"entry point {entry!r} is not callable")
    return fn


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _is_sklearn_estimator(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] in ("sklearn", "imblearn") or (
        hasattr(obj, "fit") and hasattr(obj, "predict") and hasattr(obj, "get_params"))


def _is_hf_model(obj: Any) -> bool:
    """A transformers model (``PreTrainedModel``): saved as a Hugging Face directory, built as ``hf:``."""
    return callable(getattr(obj, "save_pretrained", None)) and hasattr(obj, "config")


def save_result(result: Any, model_dir: Path, entry: str) -> str:
    """Save what the entry point returned where the build looks for it; return the file name
    (a Hugging Face model: the directory's name, or ``.`` when it saved itself into model_dir)."""
    if result is None:
        if (model_dir / names.MODEL_FILE).is_file():
            return names.MODEL_FILE
        if (model_dir / "config.json").is_file():  # save_pretrained(model_dir) by the entry point
            return "."
        raise TrainingFailed(f"entry point {entry!r} returned None and wrote no {names.MODEL_FILE} into "
                             f"{model_dir}; return the trained torch module, sklearn estimator or "
                             f"transformers model, or export {names.MODEL_FILE} into model_dir")
    if _is_hf_model(result):
        result.save_pretrained(model_dir / names.TRAINED_HF_DIR)
        return names.TRAINED_HF_DIR
    if _is_torch_module(result):
        import torch

        torch.save(result.cpu().eval(), model_dir / names.TRAINED_TORCH_FILE)
        return names.TRAINED_TORCH_FILE
    if _is_sklearn_estimator(result):
        import joblib

        joblib.dump(result, model_dir / names.TRAINED_SKLEARN_FILE)
        return names.TRAINED_SKLEARN_FILE
    raise TrainingFailed(f"entry point {entry!r} returned {type(result).__name__}; return a "
                         f"torch.nn.Module, a fitted sklearn estimator, a transformers model, or None after "
                         f"writing {names.MODEL_FILE} (or save_pretrained) into model_dir")


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = names.TRAINING_MASTER_PORT


def world(env: dict[str, str] | None = None) -> World:
    """The job's world from torchrun's variables, else SageMaker's ``SM_HOSTS``/``SM_CURRENT_HOST``."""
    env = dict(os.environ if env is None else env)
    if names.ENV_WORLD_SIZE in env:
        try:
            w = World(int(env.get(names.ENV_RANK, "0")), int(env[names.ENV_WORLD_SIZE]),
                      env.get(names.ENV_MASTER_ADDR, "127.0.0.1"),
                      int(env.get(names.ENV_MASTER_PORT, names.TRAINING_MASTER_PORT)))
        except ValueError as exc:
            raise TrainingFailed(f"{names.ENV_RANK}/{names.ENV_WORLD_SIZE}/{names.ENV_MASTER_PORT} must be "
                                 f"integers ({exc})") from None
    elif "SM_HOSTS" in env:
        try:
            hosts = sorted(json.loads(env["SM_HOSTS"]))
        except (ValueError, TypeError) as exc:
            raise TrainingFailed(f"SM_HOSTS is not a JSON list of hosts ({exc})") from None
        current = env.get("SM_CURRENT_HOST", hosts[0] if hosts else "")
        if current not in hosts:
            raise TrainingFailed(f"SM_CURRENT_HOST {current!r} is not among SM_HOSTS {hosts}")
        w = World(hosts.index(current), len(hosts), hosts[0])
    else:
        return World()
    if not 0 <= w.rank < w.size:
        raise TrainingFailed(f"rank {w.rank} is outside a world of {w.size}")
    return w


@contextlib.contextmanager
def process_group(w: World):
    """The torch default process group for a world of more than one (nothing otherwise)."""
    if w.size == 1:
        yield
        return
    os.environ.update({names.ENV_RANK: str(w.rank), names.ENV_WORLD_SIZE: str(w.size),
                       names.ENV_LOCAL_RANK: os.environ.get(names.ENV_LOCAL_RANK, "0"),
                       names.ENV_MASTER_ADDR: w.master_addr, names.ENV_MASTER_PORT: str(w.master_port)})
    try:
        import torch
        import torch.distributed as dist
    except ImportError:  # a non-torch entry point does its own communication from the env
        yield
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":  # one GPU per process: this process's is its local rank's
        torch.cuda.set_device(int(os.environ.get(names.ENV_LOCAL_RANK, "0")))
    dist.init_process_group(backend, rank=w.rank, world_size=w.size)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def gpus_per_instance(env: dict[str, str]) -> int:
    """This instance's GPUs: SageMaker's ``SM_NUM_GPUS``, else torch's count (0 without torch)."""
    raw = env.get(names.ENV_SM_NUM_GPUS)
    if raw is not None:
        try:
            return int(raw)
        except ValueError:
            raise TrainingFailed(f"{names.ENV_SM_NUM_GPUS}={raw!r} is not an integer") from None
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def launcher(argv: list[str], env: dict[str, str] | None = None) -> list[str] | None:
    """The torchrun command running this module once per GPU of this instance; None when this
    process trains itself (launched already, or fewer than two GPUs)."""
    env = dict(os.environ if env is None else env)
    if names.ENV_WORLD_SIZE in env or names.ENV_LOCAL_RANK in env:
        return None
    nproc = gpus_per_instance(env)
    if nproc < 2:
        return None
    host = world(env)  # the instance's place among the job's instances
    if host.size == 1:  # one instance: any free port on loopback (29500 may be taken)
        host = World(0, 1, "127.0.0.1", _free_port())
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={host.size}", f"--nproc_per_node={nproc}",
            f"--node_rank={host.rank}", f"--master_addr={host.master_addr}", f"--master_port={host.master_port}",
            "-m", "functions.training.train", *argv]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(command: list[str], output_dir: Path) -> int:
    """Run the per-GPU processes; the job fails when one does (its own failure file says why)."""
    import subprocess

    print(f"one training process per GPU of this instance: {' '.join(command)}", file=sys.stderr)
    code = subprocess.run(command, check=False).returncode
    failure = output_dir / "failure"
    if code != 0 and not failure.exists():
        output_dir.mkdir(parents=True, exist_ok=True)
        failure.write_text(f"a training process failed (torchrun exited {code}); see the job's log")
    return code


def _unwrap(result: Any) -> Any:
    """A ``DistributedDataParallel`` (or DataParallel) wrapper → the module it trains."""
    if _is_torch_module(result) and type(result).__name__ in ("DistributedDataParallel", "DataParallel"):
        return result.module
    return result


def _device() -> str:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def run(*, entry: str | None, code_dir: Path, config_dir: Path, data_dir: Path, model_dir: Path) -> dict:
    """One training run; raises :class:`TrainingFailed` (or the entry point's own error)."""
    started = time.perf_counter()
    hyperparameters = read_hyperparameters(config_dir)
    entry = entry or hyperparameters.get(names.HP_ENTRY_POINT)
    user_hp = {k: v for k, v in hyperparameters.items() if not k.startswith("modelfn_")}
    if not entry:
        raise TrainingFailed(f"no entry point: set training.entry_point in the catalog (the job gets it "
                             f"as ${names.ENV_TRAINING_ENTRY_POINT} or hyperparameter {names.HP_ENTRY_POINT})")
    check_data(data_dir)
    data = fingerprint(data_dir)
    fn = load_entry_point(str(entry), code_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    w = world()
    with process_group(w):
        try:
            result = _unwrap(fn(data_dir, dict(user_hp), model_dir))
        except TrainingFailed:
            raise
        except Exception as exc:
            raise TrainingFailed(f"entry point {entry!r} raised {type(exc).__name__}: {exc}") from exc
    if w.rank != 0:  # rank 0's result is the model; the others' are discarded
        return {"rank": w.rank, "world_size": w.size, "artifact": None}
    artifact = save_result(result, model_dir, str(entry))
    report = {"entry_point": str(entry), "hyperparameters": user_hp, "data": data.to_dict(),
              "artifact": artifact, "result_type": type(result).__name__ if result is not None else None,
              "device": _device(), "seconds": round(time.perf_counter() - started, 3),
              "world_size": w.size, "processes_per_instance": int(os.environ.get(names.ENV_LOCAL_WORLD_SIZE, "1")),
              "python": platform.python_version(), "job": os.environ.get("TRAINING_JOB_NAME", "")}
    (model_dir / names.TRAINING_REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _default(key: str) -> Path:
    env, fallback = DEFAULTS[key]
    return Path(os.environ.get(env, fallback))


def _code_dir() -> Path:
    return Path(os.environ.get(names.ENV_TRAINING_CODE_DIR) or os.environ.get("SM_CHANNEL_CODE")
                or DEFAULT_CODE_DIR)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", default="train", help="SageMaker passes 'train'")
    p.add_argument("--entry-point", default=os.environ.get(names.ENV_TRAINING_ENTRY_POINT))
    p.add_argument("--code-dir", type=Path, default=None)
    for key in DEFAULTS:
        p.add_argument(f"--{key.replace('_', '-')}", type=Path, default=None)
    args = p.parse_args(argv)
    output_dir = args.output_dir or _default("output_dir")
    try:
        command = launcher(list(sys.argv[1:] if argv is None else argv))
    except TrainingFailed as exc:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(str(exc)[:FAILURE_LIMIT])
        print(f"training failed: {exc}", file=sys.stderr)
        return 1
    if command is not None:
        return _launch(command, output_dir)
    try:
        report = run(entry=args.entry_point, code_dir=args.code_dir or _code_dir(),
                     config_dir=args.config_dir or _default("config_dir"),
                     data_dir=args.data_dir or _default("data_dir"),
                     model_dir=args.model_dir or _default("model_dir"))
    except Exception as exc:
        traceback.print_exc()
        reason = str(exc) if isinstance(exc, TrainingFailed) else f"{type(exc).__name__}: {exc}"
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(reason[:FAILURE_LIMIT])
        print(f"training failed: {reason}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
