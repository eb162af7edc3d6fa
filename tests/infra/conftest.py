"""Helpers for the CDK tests: a catalog + fake built models in tmp, synthesized once.

CDK synth in Python costs tens of seconds of CPU (jsii), so each app is synthesized once per
test session (:func:`shared_synth`, safe under xdist) and tests assert on the templates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from tests.conftest import TINY_INPUTS, TINY_OUTPUTS, make_tiny_onnx, write_manifest


def write_built_model(build_dir: Path, name: str, *, target: str = "lambda",
                      fit: dict | None = None, seed: int = 0) -> Path:
    """``build_dir/models/<name>/`` as `modelfn build` writes it (tiny model + manifest)."""
    model_dir = build_dir / "models" / name
    make_tiny_onnx(model_dir / "model.onnx", seed=seed)
    return write_manifest(
        model_dir, name, TINY_INPUTS, TINY_OUTPUTS, target=target, target_reasons=["test"],
        fit=fit or {"memory_mb": 1536, "timeout_s": 20, "peak_rss_mb": 300.0,
                    "init_s": 0.5, "image_bytes": 10_000_000, "gpu_required": False},
    )


def write_catalog(root: Path, models: list[dict]) -> Path:
    """A catalog at ``root/models.yaml`` whose .onnx sources exist (tiny models)."""
    import numpy as np

    for m in models:
        make_tiny_onnx(root / m["source"])
        if "validation" in m:
            np.savez(root / m["validation"], x=np.zeros((2, 4), np.float32), labels=np.zeros(2, np.int64))
        entry = (m.get("training") or {}).get("entry_point", "")
        if ":" in entry and not entry.split(":")[0].endswith(".py"):
            (root / f"{entry.split(':')[0]}.py").write_text("def train(data_dir, hp, model_dir):\n    return None\n")
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def app_context(catalog: Path, build_dir: Path, **extra) -> dict:
    return {"modelfn:catalog": str(catalog), "modelfn:build_dir": str(build_dir), **extra}


def shared_synth(tmp_path_factory, name: str, synthesize) -> tuple[Path, dict]:
    """Run ``synthesize(outdir) -> info`` once per test session, even across xdist workers.

    CDK synth + cdk-nag + cfn-lint cost tens of seconds of CPU; the first worker to ask does
    it under a file lock and stores the cloud assembly and ``info`` (JSON) in the session's
    shared temp dir; the others read them.
    """
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by every worker of this session
    workdir = root / f"shared-synth-{name}"
    workdir.mkdir(exist_ok=True)
    done = workdir / "info.json"
    with open(workdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            info = synthesize(workdir)
            done.write_text(json.dumps(info))
    return workdir, json.loads(done.read_text())


def stack_templates(outdir: Path) -> dict[str, dict]:
    """``{stack name: template}`` of the cloud assembly in ``outdir``."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    return {
        name: json.loads((outdir / art["properties"]["templateFile"]).read_text())
        for name, art in manifest["artifacts"].items()
        if art["type"] == "aws:cloudformation:stack"
    }


def stack_warnings(outdir: Path) -> list[str]:
    """Every warning annotation recorded in the cloud assembly (``*.metadata.json``)."""
    found = []
    for path in outdir.glob("*.metadata.json"):
        for entries in json.loads(path.read_text()).values():
            found += [str(e.get("data")) for e in entries if e.get("type") == "aws:cdk:warning"]
    return found


def cfn_lint_errors(outdir: Path) -> list[str]:
    from cfnlint.api import lint

    errors = []
    for name, template in stack_templates(outdir).items():
        matches = lint(json.dumps(template), regions=["us-east-1"])
        errors += [f"{name}: {m}" for m in matches if m.rule.id.startswith("E")]
    return errors


def app_template(outdir: Path) -> dict:
    """Every stack of the cloud assembly as one template, as the single stack used to be.

    Model stacks import the shared stack's exports (``Fn::ImportValue``); here each import
    is replaced by the exported value, so references resolve across the merged template. A
    logical id two stacks share (CDK's S3-notification handler, one per model stack) gets
    its stack's name appended.
    """
    templates = stack_templates(outdir)
    exports = {o["Export"]["Name"]: o["Value"] for t in templates.values()
               for o in t.get("Outputs", {}).values() if "Export" in o}

    def resolve(value):
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            if set(value) == {"Fn::ImportValue"}:
                return exports[value["Fn::ImportValue"]]
            return {k: resolve(v) for k, v in value.items()}
        return value

    merged: dict = {"Resources": {}, "Outputs": {}, "Parameters": {}}
    for name, template in templates.items():
        for section in merged:
            for logical, body in template.get(section, {}).items():
                if section == "Outputs" and "Export" in body:
                    continue  # the shared stack's exports: wiring, not outputs
                key = logical if logical not in merged[section] else f"{logical}{name.replace('-', '')}"
                merged[section][key] = resolve(body)
    return merged
