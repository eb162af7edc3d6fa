"""The deployed retraining step: gate a trained candidate against the LIVE version, and when
it wins, put it live exactly as ``modelfn promote --deployed`` does.

What the training state machine's CodeBuild step runs (``modelfn train NAME --trained DIR
--deployed``, infra/cdk/constructs/training_pipeline.py). Before, the build had no
``build/models`` and no view of the stack, so every candidate was "the first version" and
promoted, and nothing deployed it. Now:

1. **Live version.** The model's ``live`` alias (stack output ``Deployment<Model>``) names the
   Lambda version; its description names the model version. Its artifact (``manifest.json`` +
   ``model.onnx`` or a generative model's ``generation/``, listed in ``files.json``) comes from ``s3://<artifacts>/<model>/versions/<version>/`` (every
   version this step put live is published there), or, for the version ``cdk deploy``
   shipped, from the build that deployed it (CodeBuild's ``deployed`` secondary source).
   It is placed as ``build/models/<model>`` so the version store adopts it as live and the
   gate (infra.versions.gate.judge) compares against it: accuracy, latency and size ratios.
2. **Gate.** :func:`infra.train.lifecycle.train_and_promote` with ``trained=``: build, judge.
3. **Deploy the winner.** Build the model's image (the staged context ``cdk deploy`` builds,
   infra.targets.staging), push it to the repository the function's current image lives in,
   point the api and batch functions (and a generative model's stream function) at it, publish a version of each (its description names
   the model version), and start the CodeDeploy deployment of ``live`` through
   :func:`infra.versions.deployed.move_live`: the same canary, alarms and rollback as
   ``modelfn promote --deployed``. The artifact is published under ``versions/<version>/``.

The outcome (``promoted``, ``reason``, ``version``, ``deployments``) is written as JSON; the
buildspec exports it, and the state machine ends with it in its output.

A later ``cdk deploy`` ships what ``build/`` holds: pull the promoted version first
(``aws s3 sync s3://<artifacts>/<model>/versions/<version>/ build/models/<model>/``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.versions.deployed import DeployedError, deployed_versions, move_live, targets
from layers.names import MANIFEST_FILE, MODEL_FILE

#: What each kind's published version says (``_model_version`` reads the model version back).
KIND_DESCRIPTIONS = {"api": "V2 HTTP API", "batch": "S3 batch inference", "stream": "response streaming"}
#: A published version's list of its files (relative paths), written beside them: the build's
#: role reads its own objects and may not list the bucket. A version published before the list
#: existed is ``model.onnx`` + ``manifest.json``.
INDEX_FILE = "files.json"
ARTIFACT_FILES = (MODEL_FILE, MANIFEST_FILE)


def artifact_files(model_dir: Path) -> list[str]:
    """The files (relative paths) of the version in ``model_dir``: ``manifest.json``, and
    ``model.onnx`` or every file of a generative model's ``generation/``, and processing files."""
    from infra.versions.store import artifact_parts

    model_dir = Path(model_dir)
    parts = artifact_parts(model_dir, json.loads((model_dir / MANIFEST_FILE).read_text()))
    files = [MODEL_FILE] if parts["model_file"] is not None else []
    files += list(parts["side_files"])
    for name, folder in parts["folders"].items():
        files += sorted(f"{name}/{f.relative_to(folder).as_posix()}" for f in folder.rglob("*") if f.is_file())
    return [*files, MANIFEST_FILE]

ImagePusher = Callable[[Path, str], str]
"""(model directory, repository URI) → pushed image URI."""


def versions_prefix(model: str, version: str) -> str:
    return f"{model}/versions/{version}/"


def live_version(clients: dict[str, Any], stack: str, model: str) -> str:
    """The model version the ``live`` alias serves (most of the traffic, mid-canary)."""
    api = targets(clients["cloudformation"], stack, model)["api"]
    live = [d for d in deployed_versions(clients["lambda"], api, model) if d.live]
    if not live:
        raise DeployedError(f"{model}: the live alias points at no published version")
    return max(live, key=lambda d: d.weight).model_version


def fetch_live(clients: dict[str, Any], *, stack: str, model: str, bucket: str, out_dir: Path,
               deployed_dir: Path | None = None) -> str:
    """Put the live version's artifact at ``out_dir/models/<model>/``; return its version."""
    version = live_version(clients, stack, model)
    dest = Path(out_dir) / "models" / model
    dest.mkdir(parents=True, exist_ok=True)
    s3 = clients["s3"]
    prefix = versions_prefix(model, version)
    try:
        _download(s3, bucket, prefix, dest)
        return version
    except Exception as exc:  # not published there: the version cdk deploy shipped?
        missing = exc
    if deployed_dir is not None and (deployed_dir / MANIFEST_FILE).is_file():
        manifest = json.loads((deployed_dir / MANIFEST_FILE).read_text())
        if manifest.get("version") == version:
            for name in artifact_files(deployed_dir):
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).write_bytes((deployed_dir / name).read_bytes())
            return version
    raise DeployedError(f"{model}: the live version {version}'s artifact is neither under "
                        f"s3://{bucket}/{prefix} ({missing}) nor the build that `cdk deploy` shipped; "
                        f"publish it there (its files, {INDEX_FILE} listing them) or redeploy the stack")


def _download(s3, bucket: str, prefix: str, dest: Path) -> None:
    """A published version's files (its :data:`INDEX_FILE`, else :data:`ARTIFACT_FILES`) into ``dest``."""
    from botocore.exceptions import ClientError

    try:
        index = json.loads(s3.get_object(Bucket=bucket, Key=prefix + INDEX_FILE)["Body"].read())
    except ClientError:  # no list (403 without ListBucket, else 404): published before lists existed
        index = list(ARTIFACT_FILES)
    for name in index:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, prefix + name, str(dest / name))


def publish_artifact(s3, *, bucket: str, model: str, model_dir: Path, version: str) -> str:
    """Upload the version's files, then their list (last: a version whose list is there is whole)."""
    prefix = versions_prefix(model, version)
    files = artifact_files(model_dir)
    for name in files:
        s3.upload_file(str(Path(model_dir) / name), bucket, prefix + name)
    s3.put_object(Bucket=bucket, Key=prefix + INDEX_FILE, Body=json.dumps(files).encode(),
                  ContentType="application/json")
    return f"s3://{bucket}/{prefix}"


def repository_of(lam, function: str) -> str:
    """The ECR repository the function's current image is in (``cdk deploy``'s asset repo)."""
    uri = lam.get_function(FunctionName=function)["Code"].get("ImageUri", "")
    if not uri:
        raise DeployedError(f"{function} is not a container-image function")
    return uri.split("@")[0].rsplit(":", 1)[0]


def deploy_version(clients: dict[str, Any], *, stack: str, model: str, model_dir: Path, version: str,
                   push: ImagePusher) -> dict[str, str]:
    """Image → functions → published versions → CodeDeploy of ``live`` (as promote --deployed)."""
    lam = clients["lambda"]
    found = targets(clients["cloudformation"], stack, model)
    image = push(Path(model_dir), repository_of(lam, found["api"].function))
    for kind, target in found.items():
        lam.update_function_code(FunctionName=target.function, ImageUri=image)
        lam.get_waiter("function_updated_v2").wait(FunctionName=target.function)
        lam.publish_version(FunctionName=target.function,
                            Description=f"modelfn {model} {version}: {KIND_DESCRIPTIONS[kind]}")
    return move_live(clients, stack, model, version, f"modelfn retraining: {model} {version} won the gate")


def retrain_deployed(catalog, model: str, *, trained: Path, out_dir: Path, stack: str, bucket: str,
                     clients: dict[str, Any], push: ImagePusher, deployed_dir: Path | None = None,
                     on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fetch live → build + gate the candidate → deploy it when it wins. The outcome dict."""
    from infra.train.lifecycle import train_and_promote

    stage = on_stage or (lambda _s: None)
    stage("fetch live")
    live = fetch_live(clients, stack=stack, model=model, bucket=bucket, out_dir=out_dir,
                      deployed_dir=deployed_dir)
    outcome = train_and_promote(catalog, model, out_dir, trained=trained, on_stage=stage)
    result = {"model": model, "live_version": live, "version": outcome.version,
              "promoted": outcome.promoted, "reason": outcome.reason, "deployments": {}}
    if not outcome.promoted:
        return result
    stage("deploy")
    model_dir = Path(out_dir) / "models" / model  # the store made the winner live here
    publish_artifact(clients["s3"], bucket=bucket, model=model, model_dir=model_dir, version=outcome.version)
    result["deployments"] = deploy_version(clients, stack=stack, model=model, model_dir=model_dir,
                                           version=outcome.version, push=push)
    return result


def engine_pusher(engine=None, *, architecture: str = "x86_64", stage_dir: Path = Path("build/cdk-stage")
                  ) -> ImagePusher:
    """The real pusher: stage the model image as ``cdk deploy`` does, build it with the engine
    (docker in CodeBuild), log in to ECR and push; returns the pushed URI."""
    import base64
    import subprocess

    import boto3

    from infra.image.build import PLATFORMS
    from infra.image.engine import find_engine
    from infra.targets import staging

    def push(model_dir: Path, repository: str) -> str:
        eng = engine or find_engine(None)
        manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
        tag = f"{repository}:modelfn-{manifest['name']}-{manifest['version']}"
        context = staging.stage_model_image(dest=stage_dir / "images" / manifest["name"], model_dir=model_dir)
        eng.build(context=context, tag=tag, platform=PLATFORMS[architecture],
                  build_args=staging.image_build_args())
        token = boto3.client("ecr").get_authorization_token()["authorizationData"][0]
        user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
        subprocess.run([eng.executable, "login", "-u", user, "--password-stdin", token["proxyEndpoint"]],
                       input=password, text=True, check=True, capture_output=True)
        subprocess.run([eng.executable, "push", tag], check=True, capture_output=True, text=True)
        return tag

    return push
