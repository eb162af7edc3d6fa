"""The SAM CLI on the synthesized app: ``sam build`` + ``sam local invoke`` of one model's
function from ``cdk.out/<stack>.template.json`` (``make sam-invoke MODEL=… EVENT=…``).

SAM reads CDK's asset metadata (``aws:asset:path``, ``aws:asset:dockerfile-path``,
``aws:asset:docker-build-args``), so ``sam build`` builds the very staged context
``cdk deploy`` ships, and ``sam local invoke`` runs it under the Lambda Runtime Interface
Emulator that the ``aws-sam-cli`` package bundles. SAM talks the Docker API: with Docker
running it uses that; otherwise this starts ``podman system service`` on a socket in the
cache and points ``DOCKER_HOST`` at it (podman reads ``/etc/containers/containers.conf``:
runc, cgroupfs, default ulimits — scripts/container_tools.sh writes one where none exists).

The SAM CLI lives in its own virtual environment in the cache (``aws-sam-cli`` pins its own
boto3/flask/… and must not change the project's), created on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from infra.image.engine import EngineError
from infra.image.standin import cache_dir

SAM_VERSION = "1.170.0"
#: The cloud assembly: each model's functions are in its own stack's template there.
DEFAULT_TEMPLATE = Path("cdk.out")
KIND_DESCRIPTION = {"api": "V2 HTTP API", "batch": "S3 batch inference"}


def sam_executable() -> Path:
    """The SAM CLI of the cache's own venv, installed from PyPI when missing."""
    venv = cache_dir() / f"sam-venv-{SAM_VERSION}"
    sam = venv / "bin" / "sam"
    if sam.is_file():
        return sam
    python = shutil.which("python3") or sys.executable
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                           f"aws-sam-cli=={SAM_VERSION}"], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise EngineError(f"could not install aws-sam-cli=={SAM_VERSION} from PyPI: "
                          f"{proc.stderr.strip()[-800:]}")
    return sam


def _docker_api_answers(host: str) -> bool:
    sock = host.removeprefix("unix://")
    if not Path(sock).exists():
        return False
    proc = subprocess.run(["curl", "-s", "--unix-socket", sock, "http://d/_ping"],
                          capture_output=True, text=True, timeout=10)
    return proc.stdout.strip() == "OK"


@contextlib.contextmanager
def docker_api() -> Iterator[str]:
    """A ``DOCKER_HOST`` SAM can use: Docker's if it answers, else a podman service
    (started here, stopped on exit)."""
    for host in (os.environ.get("DOCKER_HOST", ""), "unix:///var/run/docker.sock"):
        if host.startswith("unix://") and _docker_api_answers(host):
            yield host
            return
    podman = shutil.which("podman")
    if podman is None:
        raise EngineError("the SAM CLI needs a Docker API: start Docker, or install podman "
                          "(`apt-get install podman runc`) and run this again")
    sock = cache_dir() / f"podman-{os.getpid()}.sock"
    sock.parent.mkdir(parents=True, exist_ok=True)
    host = f"unix://{sock}"
    proc = subprocess.Popen([podman, "system", "service", "--time=0", host],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _docker_api_answers(host):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise EngineError("`podman system service` did not start; run it by hand to see why")
            time.sleep(0.2)
        yield host
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
        sock.unlink(missing_ok=True)


def model_template(template: Path, model: str) -> Path:
    """``template`` itself, or, for a cloud assembly directory, the template of the model's
    own stack (``<dir>/ModelfnStack-<Model>.template.json``)."""
    from infra.targets.plan import DEFAULT_STACK_NAME, model_stack_name

    template = Path(template)
    return template / f"{model_stack_name(DEFAULT_STACK_NAME, model)}.template.json" if template.is_dir() else template


def function_id(template: Path, model: str, kind: str = "api") -> str:
    """The logical id of ``model``'s ``kind`` function in the synthesized template (a file, or
    the cloud assembly directory holding the model's stack)."""
    path = model_template(template, model)
    resources = json.loads(path.read_text())["Resources"] if path.is_file() else {}
    for logical_id, res in resources.items():
        desc = res.get("Properties", {}).get("Description", "")
        if (res["Type"] == "AWS::Lambda::Function" and desc.startswith(f"modelfn {model} ")
                and desc.endswith(KIND_DESCRIPTION[kind])):
            return logical_id
    raise ValueError(f"no {kind} function for model {model!r} in {template}; is it a Lambda-target "
                     "model of this catalog, and was the template synthesized (`make synth`)?")


def build_and_invoke(*, template: Path, model: str, event: Path, kind: str = "api",
                     build_dir: Path | None = None, env: dict | None = None,
                     timeout_s: float = 600) -> subprocess.CompletedProcess:
    """``sam build`` the function's image, then ``sam local invoke`` it with ``event``.
    Returns the invoke's process (stdout: the function's response)."""
    sam = sam_executable()
    logical_id = function_id(template, model, kind)
    template = model_template(template, model)
    build_dir = build_dir or Path(template).parent / ".aws-sam" / "build" / model
    with docker_api() as host:
        run_env = {**os.environ, **(env or {}), "DOCKER_HOST": host,
                   "SAM_CLI_TELEMETRY": "0", "SAM_CLI_CONTAINER_CONNECTION_TIMEOUT": "60"}
        built = subprocess.run([str(sam), "build", "--template-file", str(template),
                                "--build-dir", str(build_dir), logical_id],
                               capture_output=True, text=True, env=run_env, timeout=timeout_s)
        if built.returncode != 0:
            raise EngineError(f"sam build {logical_id} failed:\n{(built.stderr or built.stdout)[-2500:]}")
        return subprocess.run([str(sam), "local", "invoke", logical_id,
                               "--template-file", str(build_dir / "template.yaml"),
                               "--event", str(event), "--skip-pull-image"],
                              capture_output=True, text=True, env=run_env, timeout=timeout_s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.image.sam", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--event", required=True, type=Path, help="event JSON (tests/events/*.json)")
    p.add_argument("--kind", choices=sorted(KIND_DESCRIPTION), default="api")
    p.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    args = p.parse_args(argv)
    try:
        proc = build_and_invoke(template=args.template, model=args.model, event=args.event,
                                kind=args.kind)
    except (EngineError, ValueError, FileNotFoundError) as exc:
        print(f"sam-invoke: {exc}", file=sys.stderr)
        return 1
    sys.stderr.write(proc.stderr)
    sys.stdout.write(proc.stdout)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
