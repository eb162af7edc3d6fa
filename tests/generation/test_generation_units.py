"""The generation build's small parts, without building a model: the catalog keys, what the
gate reads, the KV cache the fit counts, what an image ships."""

from __future__ import annotations

import json

import pytest

from infra.catalog import CatalogError, GenerationSpec, ModelSpec, load_catalog


def test_max_context_defaults_to_the_model_limit_capped_and_refuses_more_than_the_model_has():
    from infra.build.generation import GenerationBuildError, max_context

    spec = ModelSpec(name="m", source="hf:x")
    assert max_context(spec, {"max_position_embeddings": 128}) == 128
    assert max_context(spec, {"max_position_embeddings": 131072}) == 2048
    assert max_context(spec, {"n_positions": 1024}) == 1024  # GPT-2's name for it
    wants = ModelSpec(name="m", source="hf:x", generation=GenerationSpec(max_context=4096))
    with pytest.raises(GenerationBuildError, match="over the model's own limit of 1024"):
        max_context(wants, {"n_positions": 1024})


def test_the_kv_cache_the_fit_counts_is_two_tensors_per_layer_at_max_context():
    from infra.build.generation_fit import kv_cache_bytes

    cfg = {"model": {"decoder": {"num_hidden_layers": 24, "num_key_value_heads": 2, "num_attention_heads": 14,
                                 "head_size": 64}}}
    # Qwen2-0.5B's shape: 2 × 24 layers × 2 KV heads × 64 × 2048 tokens × 4 bytes = 48 MiB
    assert kv_cache_bytes(cfg, 2048) == 2 * 24 * 2 * 64 * 2048 * 4 == 48 * 1024**2


def test_validation_text_is_prompt_lines_or_jsonl_and_anything_else_is_refused(tmp_path):
    from infra.build.generation_gate import GenerationGateError, validation

    (tmp_path / "v.txt").write_text("one\n\ntwo\n")
    assert validation(tmp_path / "v.txt") == (["one", "two"], ["one", "two"])
    (tmp_path / "v.jsonl").write_text('{"prompt": "a"}\n{"text": "b"}\n')
    assert validation(tmp_path / "v.jsonl")[0] == ["a", "b"]
    (tmp_path / "bad.jsonl").write_text('{"input": 1}\n')
    with pytest.raises(GenerationGateError, match='line 1 has no "prompt"'):
        validation(tmp_path / "bad.jsonl")
    (tmp_path / "v.npz").write_bytes(b"")
    with pytest.raises(GenerationGateError, match="a .txt"):
        validation(tmp_path / "v.npz")


def test_the_chat_template_is_found_in_either_place_transformers_saves_it(tmp_path):
    from infra.build.generation import chat_template

    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": [
        {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}))
    assert chat_template(tmp_path) == "D"
    (tmp_path / "chat_template.jinja").write_text("J")
    assert chat_template(tmp_path) == "J"


def test_weight_only_quantize_is_refused_for_a_model_that_does_not_generate(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    (tmp_path / "models.yaml").write_text("models:\n  - name: m\n    source: m.onnx\n    quantize: int4\n")
    with pytest.raises(CatalogError, match="weight-only.*for generation models"):
        load_catalog(tmp_path / "models.yaml")


def test_an_image_ships_every_file_of_a_generative_models_folder(tmp_path):
    from infra.targets.staging import model_files

    (tmp_path / "generation").mkdir()
    for name in ("genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json"):
        (tmp_path / "generation" / name).write_text("x")
    (tmp_path / "manifest.json").write_text(json.dumps({"task": "generation"}))
    assert model_files(tmp_path) == ["generation/genai_config.json", "generation/model.onnx",
                                     "generation/model.onnx.data", "generation/tokenizer.json", "manifest.json"]


def _genai_folder(path, *, layers=2, kv_heads=2, head=16):
    path.mkdir()
    (path / "genai_config.json").write_text(json.dumps({"model": {"decoder": {
        "num_hidden_layers": layers, "num_key_value_heads": kv_heads, "num_attention_heads": kv_heads,
        "head_size": head}}}))
    (path / "model.onnx").write_bytes(b"x" * 1000)
    return path


def test_fit_sends_to_sagemaker_what_is_slower_than_the_floor_needs_a_gpu_or_a_kv_cache_over_lambda(tmp_path):
    from infra.build.generation_fit import recommend

    speed = {"load_s": 0.5, "ttft_ms": 100.0, "tokens_per_s": 5.0}
    common = dict(max_tokens=128, speed=speed, hash_s=0.1, requested="auto")
    small = _genai_folder(tmp_path / "small")
    target, reasons, fit = recommend(folder=small, context=2048, instance_type="ml.m5.large",
                                     min_tokens_per_s=None, **common)
    assert target == "lambda" and fit["completion_s"] == pytest.approx(0.1 + 128 / 5.0)
    target, reasons, _ = recommend(folder=small, context=2048, instance_type="ml.m5.large", min_tokens_per_s=10,
                                   **common)
    assert target == "sagemaker" and any(r.startswith("✗") and "min_tokens_per_s 10" in r for r in reasons)
    target, _, fit = recommend(folder=small, context=2048, instance_type="ml.g5.xlarge", min_tokens_per_s=None,
                               **common)
    assert target == "sagemaker" and fit["execution_provider"] == "cuda"
    # a Llama-7B-shaped fp32 cache at 128k tokens is 128 GiB: no Lambda holds it
    big = _genai_folder(tmp_path / "big", layers=32, kv_heads=32, head=128)
    target, reasons, fit = recommend(folder=big, context=131072, instance_type="ml.m5.large",
                                     min_tokens_per_s=None, **common)
    assert target == "sagemaker" and fit["kv_cache_bytes"] == 128 * 1024**3
    assert any(r.startswith("✗ needs") and "KV cache 131072.0 MB" in r for r in reasons)


def test_the_generation_key_on_a_model_that_does_not_generate_fails_its_build_saying_so(tmp_path):
    import transformers as t

    from infra.build.builder import build_model

    t.BertForSequenceClassification(t.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=32)).save_pretrained(
        tmp_path / "bert")
    (tmp_path / "models.yaml").write_text("models:\n  - name: m\n    source: hf:bert\n"
                                          "    generation: {max_tokens: 8}\n")
    spec = load_catalog(tmp_path / "models.yaml").get("m")
    result = build_model(spec, tmp_path, tmp_path / "build")
    assert not result.ok and "the 'generation' key" in result.error and "serves classification" in result.error
