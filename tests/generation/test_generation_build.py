"""A causal LM directory builds into an onnxruntime-genai folder whose greedy tokens are
transformers' own, with a manifest the runtime can serve from (infra/kinds/generation.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.generation.conftest import build_catalog
from tests.helpers.decoders import greedy_ids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # two decoders trained, three genai exports
PROMPTS = ("the quick brown", "one two", "hello")


def genai_greedy(folder, prompt: str, new_tokens: int) -> list[int]:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    ids = list(og.Tokenizer(model).encode(prompt))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + new_tokens, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    out = []
    while not gen.is_done():
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
    return out


@pytest.fixture(scope="module")
def built(decoders, tmp_path_factory):
    root = tmp_path_factory.mktemp("genbuild")
    for fam in ("llama", "qwen2"):
        shutil.copytree(decoders[fam], root / fam)
    report = build_catalog(root, (
        "  - name: tiny-llama\n    source: hf:llama\n    quantize: int4\n    validation: val.txt\n"
        "    generation: {max_context: 96, max_tokens: 32, temperature: 0.5}\n"
        "  - name: tiny-qwen\n    source: hf:qwen2\n    quantize: none\n"))
    assert report["exit_code"] == 0, report
    return root


def manifest(root, name):
    return json.loads((root / "build" / "models" / name / "manifest.json").read_text())


@pytest.mark.parametrize(("name", "family"), [("tiny-qwen", "qwen2"), ("tiny-llama", "llama")])
def test_genai_greedy_tokens_equal_transformers(built, name, family):
    folder = built / "build" / "models" / name / "generation"
    for prompt in PROMPTS:
        assert genai_greedy(folder, prompt, 12) == greedy_ids(built / family, prompt, 12), prompt


def test_manifest_carries_the_generation_contract(built):
    from layers.manifest import read_manifest

    m = manifest(built, "tiny-qwen")
    assert m["task"] == "generation"
    assert m["signature"]["inputs"][0] == {"name": "text_input", "datatype": "BYTES", "shape": [1]}
    gen = m["generation"]
    assert gen["family"] == "qwen2" and gen["precision"] == "fp32" and gen["has_chat_template"] is True
    assert gen["eos_token_ids"] == [0] and gen["max_context"] == 128
    folder = built / "build" / "models" / "tiny-qwen" / "generation"
    assert "chat_template" in json.loads((folder / "tokenizer_config.json").read_text())
    assert json.loads((folder / "genai_config.json").read_text())["model"]["context_length"] == 128
    assert read_manifest(folder.parent).sha256 == m["sha256"]  # the folder digest verifies


def test_int4_passes_the_generation_gate_with_its_figures(built):
    m = manifest(built, "tiny-llama")
    assert m["quantization"]["mode"] == "int4" and m["generation"]["precision"] == "int4"
    shipped = m["metrics"]["shipped"]
    assert shipped["top1_agreement"] >= 0.95 and shipped["perplexity_ratio"] <= 1.10
    assert shipped["size_bytes"] < m["metrics"]["fp32"]["size_bytes"]
    assert m["generation"]["max_context"] == 96 and m["generation"]["max_tokens_default"] == 32
    assert m["fit"]["kv_cache_bytes"] == 2 * 2 * 2 * 16 * 96 * 4  # layers × kv heads × head × ctx × fp32
    assert m["target"] == "lambda" and m["fit"]["tokens_per_s"] > 0
    assert m["generation"]["defaults"] == {"temperature": 0.5}


def test_fit_costs_a_request_as_one_whole_completion(built, capsys):
    from infra.cli import main

    assert main(["fit", "tiny-llama", "--catalog", str(built / "models.yaml"), "--out", str(built / "build"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    fit = report["fit"]
    assert report["cost"]["lambda"]["billed_ms"] >= fit["completion_s"] * 1000
    assert any("KV cache" in r for r in report["target_reasons"])


def test_a_changed_artifact_is_refused(built):
    from layers.manifest import ManifestError, read_manifest

    model_dir = built / "build" / "models" / "tiny-qwen"
    broken = built / "broken"
    shutil.copytree(model_dir, broken)
    with open(broken / "generation" / "tokenizer.json", "a") as f:
        f.write(" ")
    with pytest.raises(ManifestError, match="changed after it was built"):
        read_manifest(broken)


def test_gpt2_is_exported_by_modelfn_with_its_kv_cache_and_runs_in_genai(decoders, tmp_path):
    # given a GPT-2 directory (genai's model builder does not export GPT-2; modelfn does)
    shutil.copytree(decoders["gpt2"], tmp_path / "gpt2")
    report = build_catalog(tmp_path, (
        "  - name: gpt2-fp32\n    source: hf:gpt2\n    quantize: none\n"
        "  - name: gpt2-int8\n    source: hf:gpt2\n    quantize: int8\n    validation: val.txt\n"))
    assert report["exit_code"] == 0, report
    m = manifest(tmp_path, "gpt2-fp32")
    assert m["generation"]["family"] == "gpt2" and m["generation"]["model_type"] == "gpt2"
    assert "modelfn gpt2 export" in m["generation"]["builder"]
    folder = tmp_path / "build" / "models" / "gpt2-fp32" / "generation"
    for prompt in PROMPTS:
        assert genai_greedy(folder, prompt, 12) == greedy_ids(tmp_path / "gpt2", prompt, 12), prompt
    q = manifest(tmp_path, "gpt2-int8")["quantization"]
    (cand,) = q["candidates"]
    assert cand["mode"] == "int8" and "top1_agreement" in cand["figures"] and "perplexity_ratio" in cand["figures"]
    assert q["mode"] == "int8" or q["fallback_reason"].startswith("shipped fp32: int8: ")

