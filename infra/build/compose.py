"""``pipeline: [a, b, ...]``: other catalog entries' shipped graphs merged into one ONNX model.

Each step is built (converted, quantized, gated) as its own entry first; the pipeline then
takes the graphs that *ship* for them and joins them with ``onnx.compose.merge_models``,
so the function runs one onnxruntime session (no Python, no copies between steps, and
onnxruntime optimizes across the seams). That needs the steps' signatures to line up: each
input of step k+1 is fed by an output of step k, by the ``inputs`` mapping
(``{model: b, inputs: {b_input: a_output}}``), else by name, else the one output to the
one input. IR versions are raised to the newest, default-domain opsets are upgraded to the
newest with ``onnx.version_converter``; a seam that cannot be joined is a build error
naming the step and the fix. Every node, tensor and initializer of step ``s`` is prefixed
``s/``; the pipeline's inputs keep the first step's names and its outputs the last step's.

Pre-processing comes from the first step, post-processing from the last (a ``preprocess``
or ``postprocess`` on the pipeline entry itself replaces them); the other steps' own
processing applies only when they are served alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnx import compose, version_converter

from infra.catalog import ModelSpec
from infra.catalog_processing import PipelineStep, step_name
from layers import names
from layers.manifest import Manifest, ManifestError, read_manifest


class PipelineError(ValueError):
    """The steps cannot be joined into one graph; the message names the step and the fix."""


def raw_signature(manifest: Manifest) -> dict[str, list[dict[str, Any]]]:
    block = manifest.extra.get(names.MANIFEST_PROCESSING)
    if block is not None:
        return block["model_signature"]
    return {"inputs": [t.to_dict() for t in manifest.inputs], "outputs": [t.to_dict() for t in manifest.outputs]}


def step_manifests(spec: ModelSpec, models_dir: Path) -> list[tuple[str, Manifest]]:
    out = []
    for step in spec.pipeline or ():
        name = step_name(step)
        try:
            out.append((name, read_manifest(models_dir / name, verify=True)))
        except ManifestError as exc:
            raise PipelineError(f"step {name!r} has no intact build ({exc}); build it first "
                                f"(modelfn build --model {name})") from exc
    return out


def _seam(prev: str, prev_sig: dict, step: str | PipelineStep, sig: dict) -> list[tuple[str, str]]:
    """(output of the previous step, input of this step) pairs feeding every input."""
    name = step_name(step)
    mapping = step.inputs if isinstance(step, PipelineStep) else {}
    outs = {t["name"]: t for t in prev_sig["outputs"]}
    pairs = []
    for t in sig["inputs"]:
        if t["name"] in mapping:
            src = mapping[t["name"]]
        elif t["name"] in outs:
            src = t["name"]
        elif len(sig["inputs"]) == 1 and len(outs) == 1:
            src = next(iter(outs))
        else:
            raise PipelineError(f"step {name!r} input {t['name']!r} is not fed: {prev!r} gives {list(outs)}; "
                                f"map it with {{model: {name}, inputs: {{{t['name']}: <output of {prev}>}}}}")
        if src not in outs:
            raise PipelineError(f"step {name!r}: {prev!r} has no output {src!r} (it gives {list(outs)})")
        if outs[src]["datatype"] != t["datatype"]:
            raise PipelineError(f"step {name!r} input {t['name']!r} is {t['datatype']} but {prev!r} output "
                                f"{src!r} is {outs[src]['datatype']}; the seam needs the same datatype")
        a, b = outs[src]["shape"], t["shape"]
        if len(a) != len(b) or any(x >= 0 and y >= 0 and x != y for x, y in zip(a, b, strict=False)):
            raise PipelineError(f"step {name!r} input {t['name']!r} has shape {b} but {prev!r} output {src!r} "
                                f"has {a} (-1 = any); the seam needs the same shape")
        pairs.append((src, t["name"]))
    unknown = set(mapping) - {t["name"] for t in sig["inputs"]}
    if unknown:
        raise PipelineError(f"step {name!r} has no input(s) {sorted(unknown)}; it takes {[t['name'] for t in sig['inputs']]}")
    return pairs


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}


def _align(a: onnx.ModelProto, b: onnx.ModelProto, where: str) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    ir = max(a.ir_version, b.ir_version)
    a.ir_version = b.ir_version = ir
    va, vb = _opsets(a).get("", 0), _opsets(b).get("", 0)
    if va != vb:
        target = max(va, vb)
        try:
            if va < target:
                a = version_converter.convert_version(a, target)
            else:
                b = version_converter.convert_version(b, target)
        except Exception as exc:
            raise PipelineError(f"{where}: the steps use opsets {va} and {vb} and upgrading to {target} "
                                f"failed ({exc}); export both with the same opset") from exc
        a.ir_version = b.ir_version = max(a.ir_version, b.ir_version, ir)
    for domain, version in _opsets(a).items():
        other = _opsets(b).get(domain)
        if other is not None and other != version:
            raise PipelineError(f"{where}: the steps use {domain or 'ai.onnx'} opsets {version} and {other}; "
                                "export them with the same one")
    return a, b


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in (*graph.input, *graph.output, *graph.value_info):
        if vi.name == old:
            vi.name = new


def compose_steps(spec: ModelSpec, models_dir: Path) -> tuple[onnx.ModelProto, dict[str, Any], list]:
    """The merged graph, notes for the manifest, and the steps' (name, manifest) in order."""
    steps = step_manifests(spec, models_dir)
    first_name, first = steps[0]
    merged = compose.add_prefix(onnx.load(models_dir / first_name / names.MODEL_FILE), f"{first_name}/")
    prev, prev_sig = first_name, raw_signature(first)
    for step, (name, manifest) in zip(spec.pipeline[1:], steps[1:], strict=True):
        sig = raw_signature(manifest)
        pairs = _seam(prev, prev_sig, step, sig)
        model = compose.add_prefix(onnx.load(models_dir / name / names.MODEL_FILE), f"{name}/")
        merged, model = _align(merged, model, f"model {spec.name!r} step {name!r}")
        try:
            merged = compose.merge_models(
                merged, model, io_map=[(f"{prev}/{o}", f"{name}/{i}") for o, i in pairs],
                outputs=[f"{name}/{t['name']}" for t in sig["outputs"]])
        except Exception as exc:
            raise PipelineError(f"step {name!r} cannot be merged after {prev!r}: {exc}") from exc
        prev, prev_sig = name, sig
    for t in raw_signature(first)["inputs"]:
        _rename(merged.graph, f"{first_name}/{t['name']}", t["name"])
    for t in prev_sig["outputs"]:
        _rename(merged.graph, f"{prev}/{t['name']}", t["name"])
    notes = {"converter": "onnx.compose.merge_models", "opset": str(_opsets(merged).get("", 0)),
             "steps": [{"name": n, "version": m.version, "quantization": m.quantization.get("mode")}
                       for n, m in steps]}
    return merged, notes, steps


def inherited_block(spec: ModelSpec, sig: dict[str, Any], steps: list, models_dir: Path):
    """The pipeline's processing block: the first step's preprocess, the last step's postprocess
    (unless the entry sets its own), and their side files."""
    from infra.build.processing import build_block
    from infra.kinds import kind

    own, files = build_block(spec, sig)
    block: dict[str, Any] = {"model_signature": sig}
    (first_name, first), (last_name, last) = steps[0], steps[-1]
    for key, (name, manifest), mine in (("preprocess", (first_name, first), spec.preprocess),
                                        ("postprocess", (last_name, last), spec.postprocess)):
        theirs = (manifest.extra.get(names.MANIFEST_PROCESSING) or {}).get(key)
        if mine is not None:
            block[key] = own[key]
        elif theirs is not None:
            block[key] = theirs
            if key == "preprocess":  # the kind's side files (a tokenizer) come along
                files.update(kind(theirs["kind"]).step_files(theirs, models_dir / name))
    if len(block) == 1:
        return None, {}
    from layers.manifest import sha256_file

    block["files"] = {n: sha256_file(p) for n, p in files.items()}
    return block, files
