"""A generative model placed on a GPU instance type builds as onnxruntime-genai's CUDA variant
(``-e cuda``, which needs no GPU), is gated and measured on this host's CPU, and its provider
flows catalog → plan → environment → runtime. What only a GPU shows (the CUDA kernels, the
GPU image's libraries) is not run here: no GPU on this host (README "Generative models on GPU")."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from tests.generation.conftest import build_catalog
from tests.helpers.decoders import greedy_text

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # one fp32 + one CUDA int4 export
ENTRY = ("  - name: gpu-llama\n    source: hf:llama\n    quantize: int4\n    validation: val.txt\n"
         "    target: sagemaker\n    instance_type: ml.g5.xlarge\n"
         "    generation: {max_context: 96, max_tokens: 32}\n")


@pytest.fixture(scope="module")
def built(decoders, tmp_path_factory):
    root = tmp_path_factory.mktemp("gencuda")
    shutil.copytree(decoders["llama"], root / "llama")
    report = build_catalog(root, ENTRY)
    assert report["exit_code"] == 0, report
    return root


def model_dir(root):
    return root / "build" / "models" / "gpu-llama"


def test_a_gpu_instance_type_builds_the_cuda_variant_gated_against_fp32(built):
    m = json.loads((model_dir(built) / "manifest.json").read_text())
    gen = m["generation"]
    assert gen["execution_provider"] == "cuda" and gen["precision"] == "int4" and "-e cuda" in gen["builder"]
    assert m["target"] == "sagemaker" and m["fit"]["execution_provider"] == "cuda"
    assert m["fit"]["kv_cache_bytes"] == 2 * 2 * 2 * 16 * 96 * 2  # layers × kv heads × head × ctx × fp16
    shipped = m["metrics"]["shipped"]
    assert shipped["top1_agreement"] >= 0.95 and shipped["perplexity_ratio"] <= 1.10
    assert m["metrics"]["speed"]["provider"] == "cpu"  # measured here, on the CPU: not a GPU figure


def test_the_cuda_folder_asks_genai_for_cuda_with_fp16_activations(built):
    import onnx

    folder = model_dir(built) / "generation"
    decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    assert decoder["session_options"]["provider_options"] == [{"cuda": {"enable_cuda_graph": "0"}}]
    graph = onnx.load(str(folder / decoder["filename"]), load_external_data=False).graph
    kv = [i for i in graph.input if i.name.startswith("past_key_values")]
    assert kv and all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for i in kv)
    assert any(n.op_type == "MatMulNBits" for n in graph.node)


def test_unset_the_runtime_runs_it_on_the_cpu_and_says_so(built, monkeypatch, caplog):
    from layers import names
    from layers.generation.engine import Sampling
    from layers.model import load_model

    monkeypatch.delenv(names.ENV_EXECUTION_PROVIDER, raising=False)
    with caplog.at_level(logging.INFO, logger="modelfn.generation"):
        model = load_model(model_dir(built))
    assert model.execution_provider == "cpu"
    assert "built for CUDA and runs on the CPU" in caplog.text and "runs its decoder on CPU" in caplog.text
    # the fp16 int4 graph on the CPU still completes as transformers does (a trained tiny decoder)
    text = model.complete("the quick brown", Sampling(max_tokens=12, temperature=0)).run().text
    assert text == greedy_text(built / "llama", "the quick brown", max_new_tokens=12)


def test_cuda_asked_on_a_host_without_it_fails_the_start_with_the_fix(built, monkeypatch):
    import onnxruntime_genai as og

    from layers import names
    from layers.generation.provider import CUDA_LIBRARY, ProviderUnavailable
    from layers.model import load_model

    if (__import__("pathlib").Path(og.__file__).parent / CUDA_LIBRARY).is_file():
        pytest.skip("this host has onnxruntime-genai-cuda")
    monkeypatch.setenv(names.ENV_EXECUTION_PROVIDER, "cuda")
    with pytest.raises(ProviderUnavailable, match="onnxruntime-genai-cuda"):
        load_model(model_dir(built))


def test_the_sagemaker_container_will_not_serve_when_cuda_is_asked_and_missing(built):
    # the serving container's own entry point, with the environment the GPU endpoint gets
    import os
    import subprocess
    import sys
    from pathlib import Path

    from infra.targets.provider import host_has_cuda_genai
    from layers import names

    if host_has_cuda_genai():
        pytest.skip("this host has onnxruntime-genai-cuda")
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, names.ENV_MODEL_DIR: str(model_dir(built)), names.ENV_EXECUTION_PROVIDER: "cuda",
           "PYTHONPATH": repo}
    proc = subprocess.run([sys.executable, "-m", "functions.sagemaker.serve", "--host", "127.0.0.1", "--port", "0"],
                          env=env, cwd=repo, capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    assert "MODELFN_EXECUTION_PROVIDER=cuda but CUDA is not usable here" in proc.stderr
    assert "modelfn serving on" not in proc.stdout
    # with cpu it serves, and its start line says where it generates
    env[names.ENV_EXECUTION_PROVIDER] = "cpu"
    with subprocess.Popen([sys.executable, "-m", "functions.sagemaker.serve", "--host", "127.0.0.1", "--port", "0"],
                          env=env, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as server:
        lines: list[str] = []
        try:
            while not lines or "modelfn serving on" not in lines[-1]:
                lines.append(server.stdout.readline())
                assert lines[-1], "".join(lines)  # the server exited before serving
        finally:
            server.terminate()
    assert "gpu-llama generates on cpu" in lines[-1]
    logged = "".join(lines[:-1])  # the runtime's own lines (JSON, through Powertools' Logger)
    assert "built for CUDA and runs on the CPU" in logged and "runs its decoder on CPU" in logged


def test_the_plan_carries_cuda_to_the_serving_containers_environment(built):
    from infra.catalog import load_catalog
    from infra.environment import function_environment
    from infra.targets import plan_model
    from infra.targets.deploy_spec import load_deploy_spec
    from layers import names

    spec = load_catalog(built / "models.yaml").models[0]
    plan = plan_model(load_deploy_spec(spec, built / "build"))
    assert plan.target == "sagemaker" and plan.image.gpu and plan.image.execution_provider == "cuda"
    env = function_environment(model_name=plan.name, kind="sagemaker",
                               execution_provider=plan.image.execution_provider)
    assert env[names.ENV_EXECUTION_PROVIDER] == "cuda"


def test_modelfn_image_builds_it_on_the_gpu_runtime_with_genai_for_cuda(built, tmp_path):
    from infra.catalog import load_catalog
    from infra.image.build import plan
    from infra.targets import staging
    from infra.targets.deploy_spec import load_deploy_spec

    spec = load_deploy_spec(load_catalog(built / "models.yaml").models[0], built / "build")
    (target,) = plan([spec], stage_dir=tmp_path)
    assert target.kind == "sagemaker" and target.gpu and target.platform == "linux/amd64"
    assert target.build_args == {"RUNTIME_LOCK": staging.GPU_LOCK, "GENERATION_LOCK": staging.GPU_GENERATION_LOCK}
    dockerfile = (target.context / "Dockerfile").read_text()
    assert "COPY ${GENERATION_LOCK}" in dockerfile and (target.context / staging.GPU_GENERATION_LOCK).is_file()


def test_a_cuda_build_deployed_where_the_catalog_now_says_cpu_asks_for_a_rebuild(built):
    from infra.catalog import load_catalog
    from infra.targets.deploy_spec import NotBuiltError, load_deploy_spec

    spec = load_catalog(built / "models.yaml").models[0].model_copy(update={"instance_type": "ml.m5.xlarge"})
    with pytest.raises(NotBuiltError, match="built for cuda but its catalog entry places it on cpu"):
        load_deploy_spec(spec, built / "build")


def test_the_local_stack_runs_a_cuda_plan_on_the_cpu_and_logs_why(caplog):
    from infra.targets.provider import host_has_cuda_genai, local_provider

    if host_has_cuda_genai():
        pytest.skip("this host has onnxruntime-genai-cuda")
    with caplog.at_level(logging.WARNING, logger="modelfn.local"):
        assert local_provider("cuda", model="gpu-llama") == "cpu"
        assert local_provider("cuda", model="gpu-llama", containers=True) == "cpu"
    assert caplog.text.count("planned for CUDA") == 2 and local_provider("cpu", model="x") == "cpu"
