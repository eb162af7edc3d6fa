"""Build side of task ``generation``: causal language models (``*ForCausalLM``, ``GPT2LMHeadModel``)
built into an onnxruntime-genai model folder. The runtime side is :mod:`layers.kinds.generation`.

Artifact contract (``build/models/<name>/``; what the runtime may rely on)
--------------------------------------------------------------------------
``generation/``
    A folder ``onnxruntime_genai.Model(str(model_dir / "generation"))`` opens as it is:

    * ``genai_config.json``: genai's config (``model.type`` ``llama``/``qwen2``/``gpt2``/...,
      ``model.context_length`` = the catalog's ``max_context``, ``eos_token_id``,
      ``search`` defaults: greedy, ``max_length`` = ``max_context``);
    * ``model.onnx`` (+ ``model.onnx.data``): the decoder with its KV cache (inputs
      ``input_ids``, ``attention_mask``, ``past_key_values.%d.key/value``; outputs ``logits``,
      ``present.%d.key/value``), fp32 or weight-only int4/int8 (``MatMulNBits``);
    * ``tokenizer.json`` and ``tokenizer_config.json`` (with ``chat_template`` when the
      source directory has one, whether it kept it in ``tokenizer_config.json`` or in
      transformers 5's ``chat_template.jinja``; ``chat_template.jinja`` is copied too);
    * ``generation_config.json`` when the source has one (transformers' defaults: eos, pad).

    Text is decoded the way transformers decodes it with ``tokenizers`` on ``tokenizer.json``
    (genai's own ``Tokenizer.decode`` differs on invalid UTF-8 byte tokens).

``manifest.json``
    The usual fields (design.md "Build output") with these meanings for generation:

    * ``sha256``/``version``: the digest of the ``generation/`` folder (every file's relative
      path and sha256, sorted: :func:`layers.manifest.folder_sha256`); there is no top-level
      ``model.onnx``;
    * ``task``: ``"generation"``;
    * ``signature``: V2 ``text_input`` BYTES ``[1]`` → ``text_output`` BYTES ``[1]`` (Triton's
      generate extension);
    * ``generation``: ``{"family", "architecture", "model_type", "precision" ("fp32"|"int4"|
      "int8"), "max_context", "max_tokens_default", "eos_token_ids": [..], "bos_token_id",
      "pad_token_id", "has_chat_template", "builder" ("onnxruntime-genai <version> model builder"
      or "modelfn gpt2 export ..."), "gate": {...}, "defaults": {"temperature", "top_p",
      "top_k"} (only those the catalog sets)}``;
    * ``quantization``: ``mode`` (``none``/``int4``/``int8``), ``requested``, ``candidates``
      (each with its gate figures and verdict), ``fallback_reason`` when fp32 ships;
    * ``metrics``: ``fp32``/``shipped`` ``size_bytes``, ``tokens_per_s``, ``ttft_ms``;
    * ``fit``: weights + KV cache at ``max_context``, and the Lambda/SageMaker decision.

Catalog keys (``generation:`` block, :class:`infra.catalog.GenerationSpec`): ``max_context``
(default: the model's ``max_position_embeddings``, at most :data:`DEFAULT_MAX_CONTEXT_CAP`),
``max_tokens`` (default completion length, :data:`DEFAULT_MAX_TOKENS`), ``min_tokens_per_s``
(a Lambda requirement, else SageMaker), ``temperature``/``top_p``/``top_k`` (sampling defaults).
``quantize: auto|int4|int8|none`` and ``tolerance: {top1_agreement, max_perplexity_ratio}``
(default 0.95 / 1.10) drive the gate (:mod:`infra.build.generation_gate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.kinds import BuildTask, ProcessingError, register

NAME = "generation"
#: the folder inside the model directory that onnxruntime-genai opens
FOLDER = "generation"
#: default ``max_context`` cap when the catalog sets none (the model's own limit may be 128k)
DEFAULT_MAX_CONTEXT_CAP = 2048
#: default completion length (OpenAI's ``max_tokens`` when a request sends none)
DEFAULT_MAX_TOKENS = 128
#: V2 signature of a generative model (Triton's generate extension)
SIGNATURE = {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1]}],
             "outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [1]}]}
#: architectures the onnxruntime-genai model builder exports (its create_model's list), by the
#: family name modelfn reports; others of task generation are exported by modelfn (gpt2)
BUILDER_FAMILIES = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3", "PhiForCausalLM": "phi", "Phi3ForCausalLM": "phi3",
    "GemmaForCausalLM": "gemma", "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3",
    "GraniteForCausalLM": "granite", "OlmoForCausalLM": "olmo", "NemotronForCausalLM": "nemotron",
    "SmolLM3ForCausalLM": "smollm3", "InternLM2ForCausalLM": "internlm2", "Ernie4_5ForCausalLM": "ernie",
}
#: exported by modelfn itself (infra/build/generation_gpt2.py), run by genai's own model type
OWN_EXPORT_FAMILIES = {"GPT2LMHeadModel": "gpt2"}


def family_of(architecture: str) -> str | None:
    """The family modelfn builds ``architecture`` as, or None when it cannot build it."""
    return BUILDER_FAMILIES.get(architecture) or OWN_EXPORT_FAMILIES.get(architecture)


def supported() -> str:
    """The generative architectures modelfn builds, for error messages."""
    return ", ".join(sorted({*BUILDER_FAMILIES, *OWN_EXPORT_FAMILIES}))


class GenerationTask(BuildTask):
    """Generation builds its own folder (:mod:`infra.build.generation`); it has no
    ``postprocess`` block and no tensor gate figures."""

    name = NAME

    def block(self, post: Any, sig: dict[str, Any], model_config: Mapping[str, Any]) -> dict[str, Any]:
        raise ProcessingError("a generation model takes no 'postprocess'/'preprocess' block; remove them "
                              "(the tokenizer and the decoding settings come from the model directory and "
                              "the 'generation:' catalog block)")


register(GenerationTask())
