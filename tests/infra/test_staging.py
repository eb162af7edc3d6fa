"""Staged asset sources: small, deterministic, composed from the repository's Dockerfiles."""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from pathlib import Path

from infra.targets import staging
from layers import names
from tests.infra.conftest import write_built_model


def test_model_dockerfile_runs_the_api_handler_and_adds_the_model_last() -> None:
    text = staging.MODEL_DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[-1] == f'CMD ["{names.API_HANDLER}"]'
    copies = [line for line in instructions if line.startswith("COPY")]
    assert copies[-1].startswith("COPY model/")


def test_composed_dockerfile_hoists_global_args_and_builds_from_the_runtime_stage() -> None:
    text = staging.compose_dockerfile(staging.LAYERS_DOCKERFILE.read_text(),
                                      staging.MODEL_DOCKERFILE.read_text())
    lines = text.splitlines()[1:]
    first_from = next(i for i, line in enumerate(lines) if line.startswith("FROM"))
    assert all(line.startswith("ARG") for line in lines[:first_from])
    assert f"ARG PYTHON_BASE={staging.DEFAULT_PYTHON_BASE}" in lines[:first_from]
    froms = [line for line in lines if line.startswith("FROM")]
    # the model stage names the runtime stage literally: buildah/podman 4.x resolve no stage
    # name that comes from an ARG, so every engine builds the same two stages
    assert froms == ["FROM ${PYTHON_BASE} AS modelfn-runtime", "FROM modelfn-runtime"]


def test_a_pushed_runtime_base_replaces_the_first_stage() -> None:
    text = staging.compose_dockerfile(staging.LAYERS_DOCKERFILE.read_text(),
                                      staging.MODEL_DOCKERFILE.read_text(),
                                      runtime_image="123.dkr.ecr.us-east-1.amazonaws.com/base:1")
    froms = [line for line in text.splitlines() if line.startswith("FROM")]
    assert froms == ["FROM 123.dkr.ecr.us-east-1.amazonaws.com/base:1"]
    assert "pip install" not in text


def test_runtime_installs_only_the_locked_closure_with_hashes() -> None:
    text = staging.LAYERS_DOCKERFILE.read_text()
    assert f"ARG RUNTIME_LOCK={staging.CPU_LOCK}" in text
    assert "--require-hashes --no-deps --only-binary=:all:" in text
    assert staging.image_build_args() == {}
    assert staging.image_build_args(python_base="x", gpu=True) == {
        "PYTHON_BASE": "x", "RUNTIME_LOCK": staging.GPU_LOCK}
    assert staging.is_cuda_instance("ml.g5.xlarge") and staging.is_cuda_instance("ml.p4d.24xlarge")
    assert not staging.is_cuda_instance("ml.m5.large") and not staging.is_cuda_instance("ml.inf2.xlarge")


def test_sagemaker_dockerfile_serves_the_shared_module() -> None:
    text = staging.SAGEMAKER_DOCKERFILE.read_text()
    assert f'"{names.SAGEMAKER_SERVE_MODULE}"' in text and 'CMD ["serve"]' in text


def test_model_context_holds_only_what_the_image_needs(tmp_path: Path) -> None:
    model_dir = write_built_model(tmp_path / "build", "m")
    ctx = staging.stage_model_image(dest=tmp_path / "ctx", model_dir=model_dir)
    top = {p.name for p in ctx.iterdir()}
    assert top == {"Dockerfile", "layers", "functions", "model"}
    assert sorted(p.name for p in (ctx / "model").iterdir()) == [names.MANIFEST_FILE, names.MODEL_FILE,
                                                                 names.VERIFIED_FILE]
    # the digest checked once per image: the marker names the manifest's sha256 and the file's size
    marker = json.loads((ctx / "model" / names.VERIFIED_FILE).read_text())
    manifest = json.loads((model_dir / names.MANIFEST_FILE).read_text())
    assert marker == {"sha256": manifest["sha256"],
                      "sizes": {names.MODEL_FILE: (model_dir / names.MODEL_FILE).stat().st_size}}
    assert sorted(p.name for p in (ctx / "functions").iterdir() if p.is_dir()) == ["api", "batch", "sagemaker", "stream"]
    assert not list(ctx.rglob("__pycache__")) and (ctx / "layers" / "requirements.txt").is_file()


def test_restaging_keeps_unchanged_files_and_drops_stale_ones(tmp_path: Path) -> None:
    model_dir = write_built_model(tmp_path / "build", "m")
    ctx = staging.stage_model_image(dest=tmp_path / "ctx", model_dir=model_dir)
    before = (ctx / "model" / names.MODEL_FILE).stat().st_mtime_ns
    (ctx / "stale.txt").write_text("left over")
    staging.stage_model_image(dest=ctx, model_dir=model_dir)
    assert (ctx / "model" / names.MODEL_FILE).stat().st_mtime_ns == before
    assert not (ctx / "stale.txt").exists()


def test_restaging_an_unchanged_model_neither_copies_nor_reads_it_again(tmp_path: Path, monkeypatch) -> None:
    # given a staged model context
    model_dir = write_built_model(tmp_path / "build", "m")
    staging.stage_model_image(dest=tmp_path / "ctx", model_dir=model_dir)
    copies, reads = [], []
    copy2, cmp = staging.shutil.copy2, staging.filecmp.cmp
    monkeypatch.setattr(staging.shutil, "copy2", lambda *a, **k: copies.append(a) or copy2(*a, **k))
    monkeypatch.setattr(staging.filecmp, "cmp", lambda *a, **k: reads.append(a) or cmp(*a, **k))
    # when it is staged again (the next synth)
    staging.stage_model_image(dest=tmp_path / "ctx", model_dir=model_dir)
    # then no file was copied or compared by content
    assert copies == [] and reads == []
    # and a changed model file is copied
    (model_dir / names.MANIFEST_FILE).write_text((model_dir / names.MANIFEST_FILE).read_text() + " ")
    staging.stage_model_image(dest=tmp_path / "ctx", model_dir=model_dir)
    assert [Path(a[0]).name for a in copies] == [names.MANIFEST_FILE]


def test_model_tarball_is_deterministic_and_holds_the_model_at_the_root(tmp_path: Path) -> None:
    model_dir = write_built_model(tmp_path / "build", "m")
    a = staging.write_model_tarball(model_dir=model_dir, dest=tmp_path / "a" / "model.tar.gz")
    b = staging.write_model_tarball(model_dir=model_dir, dest=tmp_path / "b" / "model.tar.gz")
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(a.read_bytes()))) as tar:
        assert sorted(tar.getnames()) == [names.MANIFEST_FILE, names.MODEL_FILE]
        assert tar.extractfile(names.MODEL_FILE).read() == (model_dir / names.MODEL_FILE).read_bytes()


def test_proxy_code_carries_only_its_handler_and_the_shared_names(tmp_path: Path) -> None:
    code = staging.stage_proxy_code(dest=tmp_path / "proxy")
    files = sorted(p.relative_to(code).as_posix() for p in code.rglob("*.py"))
    assert "functions/proxy/handler.py" in files and "layers/names.py" in files
    assert not any(re.match(r"layers/(model|codec|protocol)\.py", f) for f in files)


def test_a_generative_models_image_adds_the_decoding_loop_and_carries_the_streaming_runtime(tmp_path: Path) -> None:
    import json

    model_dir = write_built_model(tmp_path / "build", "gen")
    plain = (staging.stage_model_image(dest=tmp_path / "plain", model_dir=model_dir) / "Dockerfile").read_text()
    manifest = json.loads((model_dir / "manifest.json").read_text())
    (model_dir / "manifest.json").write_text(json.dumps({**manifest, "task": "generation"}))
    context = staging.stage_model_image(dest=tmp_path / "gen", model_dir=model_dir)
    dockerfile = (context / "Dockerfile").read_text()
    assert "requirements-generation.lock" not in plain and "requirements-generation.lock" in dockerfile
    assert (context / "layers" / "requirements-generation.lock").is_file()
    # its own layer between the runtime's and the function code's: code changes keep it cached
    assert dockerfile.index("FROM modelfn-runtime") < dockerfile.index("modelfn-generation.lock") \
        < dockerfile.index("COPY functions/")
    # installed as the runtime's lock is: every wheel's hash required, nothing resolved
    layer = dockerfile[dockerfile.index("modelfn-generation.lock"):dockerfile.index("COPY functions/")]
    assert "--require-hashes" in layer and "--no-deps" in layer and "--only-binary=:all:" in layer
    assert (context / "functions" / "stream" / "runtime.py").is_file()
    serving = staging.stage_sagemaker_image(dest=tmp_path / "sm", generative=True) / "Dockerfile"
    assert "requirements-generation.lock" in serving.read_text()


def test_a_generative_model_on_a_gpu_instance_installs_genai_for_cuda(tmp_path: Path) -> None:
    # given the generative SageMaker context (CPU and GPU endpoints share it; build args differ)
    context = staging.stage_sagemaker_image(dest=tmp_path / "sm", generative=True)
    dockerfile = (context / "Dockerfile").read_text()
    # then the generation layer installs the lock a build arg names, the CPU one by default ...
    assert "ARG GENERATION_LOCK=layers/requirements-generation.lock" in dockerfile
    assert "COPY ${GENERATION_LOCK} /tmp/modelfn-generation.lock" in dockerfile
    assert (context / staging.GPU_GENERATION_LOCK).is_file()
    # ... and a GPU instance type's build args pick the CUDA runtime and the CUDA decoding loop
    assert staging.image_build_args(gpu=True, generative=True) == {
        "RUNTIME_LOCK": staging.GPU_LOCK, "GENERATION_LOCK": staging.GPU_GENERATION_LOCK}
    assert "GENERATION_LOCK" not in staging.image_build_args(gpu=True)  # a tensor model has no such layer
    assert staging.image_build_args(generative=True) == {}  # CPU: the Dockerfile's defaults


def _sync_many(dest: str, which: int, rounds: int) -> None:
    from infra.targets.staging import sync_tree

    for i in range(rounds):
        sub = "b" if (i + which) % 2 else "c"
        sync_tree(Path(dest), {f"layers/m{k}.py": b"x" * 64 for k in range(40)} | {f"{sub}/f.txt": b"y"})


def test_two_processes_staging_one_directory_take_turns(tmp_path: Path) -> None:
    """Two stagings into one context (two test workers, ``modelfn image`` beside ``cdk synth``)
    must not remove each other's files mid-copy."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_sync_many, args=(str(tmp_path / "ctx"), w, 25)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
