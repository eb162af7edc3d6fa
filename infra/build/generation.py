"""A causal language model (``hf:<dir>`` of task generation) → an onnxruntime-genai folder.

The stages mirror :mod:`infra.build.builder`'s: convert (onnxruntime-genai's model builder for
the families it knows; modelfn's own KV-cache export for GPT-2, :mod:`infra.build.generation_gpt2`),
quantize (weight-only int4/int8 candidates, :mod:`infra.build.generation_gate`), gate, measure
(tokens/s and time to first token on this host), fit (weights + KV cache at ``max_context``),
package (``generation/`` + ``manifest.json``, published atomically). The artifact contract is
:mod:`infra.kinds.generation`'s docstring.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.build import artifact
from infra.catalog import GenerationSpec, ModelSpec
from infra.kinds import generation as contract
from infra.targets import provider
from infra.tasks.detect import HfTask
from layers.manifest import folder_sha256, sha256_file
from layers.names import GENERATION_DIR

#: Files of the source directory that shape the artifact (hashed into the cache key).
SOURCE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "chat_template.jinja", "special_tokens_map.json")
#: Files the genai folder takes from the source directory as they are.
COPIED = ("generation_config.json", "chat_template.jinja")
#: onnxruntime-genai's builder: the precisions modelfn asks it for, per execution provider
#: (``-e``). The CUDA variant's unquantized form is fp16: genai 0.18's builder writes an invalid
#: graph for ``-p fp32 -e cuda`` ("Graph output (present.0.key) does not exist"), and fp16 is
#: what its CUDA attention kernels take.
PRECISIONS = {"cpu": ("fp32", "int4", "int8"), "cuda": ("fp16", "int4", "int8")}
#: the unquantized precision each provider's folder ships when no weight-only candidate does
BASE_PRECISION = {"cpu": "fp32", "cuda": "fp16"}
#: genai_config's provider options for a CUDA folder (what the builder writes for ``-e cuda``)
CUDA_PROVIDER_OPTIONS = [{"cuda": {"enable_cuda_graph": "0"}}]


class GenerationBuildError(RuntimeError):
    """The generative model cannot be built; the message says why and what to do."""


def genai_version() -> str:
    try:
        return md.version("onnxruntime-genai")
    except md.PackageNotFoundError:
        return "not installed"


def model_config(source: Path) -> dict[str, Any]:
    return json.loads((source / "config.json").read_text())


def max_context(spec: ModelSpec, config: dict[str, Any]) -> int:
    """The catalog's ``generation.max_context``, else the model's limit capped at
    :data:`contract.DEFAULT_MAX_CONTEXT_CAP`; never above the model's own position limit."""
    limit = config.get("max_position_embeddings") or config.get("n_positions") or config.get("n_ctx")
    gen = spec.generation or GenerationSpec()
    if gen.max_context is not None:
        if limit and gen.max_context > limit:
            raise GenerationBuildError(
                f"generation.max_context {gen.max_context} is over the model's own limit of {limit} positions "
                f"(config.json max_position_embeddings); set max_context to {limit} or less")
        return gen.max_context
    return min(int(limit), contract.DEFAULT_MAX_CONTEXT_CAP) if limit else contract.DEFAULT_MAX_CONTEXT_CAP


def cache_key(spec: ModelSpec, source: Path) -> str:
    """Everything that determines the folder: weights, config and tokenizer files, settings."""
    files = {p.name: sha256_file(p) for p in sorted(source.iterdir())
             if p.is_file() and (p.name in SOURCE_FILES or p.suffix in (".safetensors", ".bin"))}
    settings = spec.model_dump(mode="json", include={"quantize", "tolerance", "strict", "target", "instance_type",
                                                      "timeout_s", "generation", "validation", "architecture"})
    if spec.validation is not None:
        files["validation"] = sha256_file(spec.validation)
    blob = json.dumps({"pipeline": artifact.PIPELINE_VERSION, "genai": genai_version(), "files": files,
                       "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_builder(source: Path, out: Path, precision: str, cache: Path, extra: dict[str, str] | None = None,
                provider: str = "cpu") -> None:
    """``python -m onnxruntime_genai.models.builder -i source -o out -p precision -e provider`` in
    a child process (its torch load and memory stay out of the build's); its output is kept only
    to explain a failure. ``-e cuda`` needs no GPU: the builder only writes the graph (fp16
    activations, CUDA's attention layout) and genai_config's CUDA provider options."""
    if precision not in PRECISIONS.get(provider, ()):
        raise GenerationBuildError(f"precision {precision!r} on {provider!r} is not one of "
                                   f"{PRECISIONS.get(provider, PRECISIONS['cpu'])}")
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source), "-o", str(out),
           "-p", precision, "-e", provider, "-c", str(cache)]
    if extra:
        cmd += ["--extra_options", *(f"{k}={v}" for k, v in extra.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (out / "genai_config.json").is_file():
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()][-3:]
        raise GenerationBuildError(f"onnxruntime-genai's model builder failed on {source} at {precision} "
                                   f"(exit {proc.returncode}): {' | '.join(tail) or 'no output'}")


def chat_template(source: Path) -> str | None:
    """The directory's chat template: ``chat_template.jinja`` (transformers 5) or
    ``tokenizer_config.json``'s ``chat_template`` (a string, or a list of named templates whose
    ``default`` is taken)."""
    jinja = source / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    cfg = source / "tokenizer_config.json"
    if not cfg.is_file():
        return None
    value = json.loads(cfg.read_text()).get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default") or next(iter(named.values()), None)
    return value if isinstance(value, str) and value.strip() else None


def finish_folder(source: Path, folder: Path, context: int) -> None:
    """Make ``folder`` hold what the contract says beyond what the exporter wrote: the
    source's tokenizer files and generation_config, the chat template inside
    tokenizer_config.json, ``context_length``/``max_length`` = ``context``."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", *COPIED):
        if (source / name).is_file() and not (folder / name).is_file():
            shutil.copyfile(source / name, folder / name)
    if not (folder / "tokenizer.json").is_file():
        raise GenerationBuildError(f"{source} has no tokenizer.json; save the tokenizer with "
                                   "tokenizer.save_pretrained(dir) (a fast tokenizer) next to the model")
    tok_cfg_path = folder / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text()) if tok_cfg_path.is_file() else {}
    template = chat_template(source)
    if template is not None:
        tok_cfg["chat_template"] = template
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n")
    cfg_path = folder / "genai_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["context_length"] = context
    cfg.setdefault("search", {})["max_length"] = context
    cfg_path.write_text(json.dumps(cfg, indent=4) + "\n")


def eos_ids(source: Path, config: dict[str, Any]) -> list[int]:
    """Every end-of-sequence id: generation_config.json's (an int or a list), else config.json's."""
    value = None
    gen_cfg = source / "generation_config.json"
    if gen_cfg.is_file():
        value = json.loads(gen_cfg.read_text()).get("eos_token_id")
    if value is None:
        value = config.get("eos_token_id")
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list) else [value])]


def base_precision(hf: HfTask, provider: str) -> str:
    """The unquantized precision of ``provider``'s folder (modelfn's own GPT-2 export is fp32
    everywhere: plain ONNX ops, which CUDA runs in fp32)."""
    return "fp32" if hf.architecture in contract.OWN_EXPORT_FAMILIES else BASE_PRECISION[provider]


def export(hf: HfTask, out: Path, precision: str, context: int, work: Path, provider: str = "cpu") -> dict[str, Any]:
    """The genai folder for ``hf`` at ``precision`` for ``provider`` in ``out``; returns how it
    was made."""
    family = contract.family_of(hf.architecture)
    if hf.architecture in contract.OWN_EXPORT_FAMILIES:
        from infra.build import generation_gpt2

        generation_gpt2.export(hf.model_dir, out, precision, context)
        made_by = f"modelfn {family} export (onnxruntime-genai {genai_version()} runs it)"
        if provider == "cuda":
            _mark_cuda(out)
    else:
        run_builder(hf.model_dir, out, precision, work / "hf_cache", provider=provider)
        made_by = f"onnxruntime-genai {genai_version()} model builder"
    finish_folder(hf.model_dir, out, context)
    return {"family": family, "builder": made_by + (" (-e cuda)" if provider == "cuda" else "")}


def _mark_cuda(folder: Path) -> None:
    """genai_config's decoder asks for CUDA (what genai's builder writes for ``-e cuda``)."""
    path = folder / "genai_config.json"
    cfg = json.loads(path.read_text())
    cfg["model"]["decoder"].setdefault("session_options", {})["provider_options"] = CUDA_PROVIDER_OPTIONS
    path.write_text(json.dumps(cfg, indent=4) + "\n")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def publish(spec: ModelSpec, folder: Path, manifest: dict[str, Any], target: Path) -> dict[str, Any]:
    """``folder`` as the model's ``generation/`` with ``manifest`` (sha256 = the folder digest)."""
    digest = folder_sha256(folder)
    manifest = {"name": spec.name, "version": digest[:12], "sha256": digest, **manifest}
    artifact.publish(None, manifest, target, folders={GENERATION_DIR: folder})
    return manifest


def built_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(job: Any, hf: HfTask) -> None:
    """Build ``job`` (:class:`infra.build.builder._Job`) for the causal LM ``hf``: stages
    convert → quantize → gate → measure → package, as the tensor builder reports them."""
    import time

    from infra.build import generation_fit, generation_gate, generation_measure

    spec, name = job.spec, job.spec.name
    if spec.preprocess is not None or spec.postprocess is not None:
        raise GenerationBuildError(f"model {name!r}: a generation model takes no 'preprocess'/'postprocess' "
                                   "(its tokenizer comes from the directory); remove them")
    config = model_config(hf.model_dir)
    context = max_context(spec, config)
    gen = spec.generation or GenerationSpec()
    key = cache_key(spec, hf.model_dir)
    if not job.force and (cached := artifact.reusable(job.target, key)):
        job.reuse(cached)
        return
    prov = provider.execution_provider(target=spec.target, instance_type=spec.instance_type)
    job.stage(name, "convert")
    fp32 = job.work / "fp32"
    made = export(hf, fp32, "fp32", context, job.work)
    prompts, text = generation_gate.validation(spec.validation)
    job.stage(name, "quantize")
    choice = generation_gate.choose(spec, hf, fp32, context, job.work, prompts, text, provider=prov,
                                    progress=lambda what: job.stage(name, what))
    if prov == provider.CUDA:
        made["builder"] += " (-e cuda)"
    shipped = choice.folder
    job.stage(name, "measure")
    prompt = prompts[0] if prompts else generation_measure.DEFAULT_PROMPT
    fp32_speed = generation_measure.speed(fp32, prompt)
    speed = fp32_speed if shipped == fp32 else generation_measure.speed(shipped, prompt)
    started = time.perf_counter()
    folder_sha256(shipped)
    hash_s = time.perf_counter() - started
    target, reasons, fit_info = generation_fit.recommend(
        folder=shipped, context=context, max_tokens=gen.max_tokens, speed=speed, hash_s=hash_s,
        instance_type=spec.instance_type, requested=spec.target, min_tokens_per_s=gen.min_tokens_per_s)
    job.stage(name, "package")
    genai_cfg = json.loads((shipped / "genai_config.json").read_text())
    block = {
        "family": made["family"], "architecture": hf.architecture, "model_type": genai_cfg["model"]["type"],
        "precision": choice.precision, "max_context": context, "max_tokens_default": gen.max_tokens,
        "eos_token_ids": eos_ids(hf.model_dir, config), "bos_token_id": config.get("bos_token_id"),
        "pad_token_id": config.get("pad_token_id"), "has_chat_template": chat_template(hf.model_dir) is not None,
        "builder": made["builder"], "gate": choice.gate, "execution_provider": prov,
        "defaults": {k: v for k in ("temperature", "top_p", "top_k") if (v := getattr(gen, k)) is not None},
    }

    def perf(folder: Path, figures: dict[str, Any]) -> dict[str, Any]:
        return {"size_bytes": folder_bytes(folder), "tokens_per_s": figures["tokens_per_s"],
                "ttft_ms": figures["ttft_ms"], "load_s": figures["load_s"]}

    manifest = {
        "source": spec.source if spec.source_path is None else _relative(Path(spec.source_path), job.root, spec.source),
        "signature": contract.SIGNATURE,
        "task": contract.NAME,
        contract.NAME: block,
        "quantization": choice.quantization,
        "metrics": {"fp32": perf(fp32, fp32_speed), "shipped": {**perf(shipped, speed), **choice.figures},
                    "speed": speed},
        "target": target, "target_reasons": reasons, "built_at": built_at(), "fit": fit_info,
        "build": {"cache_key": key, "pipeline_version": artifact.PIPELINE_VERSION, "builder": made["builder"]},
    }
    job.result.manifest = publish(spec, shipped, manifest, job.target)
    job.result.model_dir = job.target


def _relative(path: Path, root: Path, source: str) -> str:
    try:
        return "hf:" + str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return source
