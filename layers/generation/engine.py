"""A generative model served with onnxruntime-genai: the decoding loop with its KV cache.

onnxruntime-genai (``Model``, ``GeneratorParams``, ``Generator``) runs the loop: the prompt's
tokens in, one token per ``generate_next_token``, the KV cache kept between steps, greedy or
sampled (temperature, top-p, top-k, seed). This module adds what a service needs around it:
requests checked against the context length, the model's EOS ids, stop sequences, a token
budget, usage counts, and text made by the model's own tokenizer as transformers makes it
(:mod:`layers.generation.text`), delivered as deltas while the tokens come.

:class:`GenerationModel` is a :class:`~layers.servable.Servable` like any other model (V2
metadata, ``infer`` on a ``text_input`` BYTES tensor → ``text_output``, batch rows), plus
:meth:`GenerationModel.generate` for the protocols that stream.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from layers import names
from layers.errors import BadRequest
from layers.generation import provider
from layers.generation.chat import ChatTemplate, find_template
from layers.generation.text import Detokenizer, TextCodec, special_token
from layers.manifest import Manifest, ManifestError, TensorSpec
from layers.servable import ServableBase

#: the manifest's block (``"generation": {...}``) and the folder ``onnxruntime_genai`` opens
MANIFEST_BLOCK = "generation"
FOLDER = "generation"
TEXT_INPUT, TEXT_OUTPUT = "text_input", "text_output"
FINISH_REASON, PROMPT_TOKENS, COMPLETION_TOKENS = "finish_reason", "prompt_tokens", "completion_tokens"
#: numpy callers (the batch job) may pass each row's settings beside the prompts: an object
#: array of dicts (``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``, ``stop``,
#: or ``messages`` for a chat row); not part of the public signature
PARAMETERS = "parameters"
#: the public V2 signature of every generative model (Triton's generate extension's names):
#: prompts in; completions, why each ended, and the tokens counted out
SIGNATURE_INPUTS = (TensorSpec(TEXT_INPUT, "BYTES", (-1,)),)
SIGNATURE_OUTPUTS = (TensorSpec(TEXT_OUTPUT, "BYTES", (-1,)), TensorSpec(FINISH_REASON, "BYTES", (-1,)),
                     TensorSpec(PROMPT_TOKENS, "INT64", (-1,)), TensorSpec(COMPLETION_TOKENS, "INT64", (-1,)))
#: what a request gets when it names no budget and the catalog set none (OpenAI's completions
#: default); never more than the context has room for
DEFAULT_MAX_TOKENS = 16
STOP, LENGTH = "stop", "length"
MAX_STOP_SEQUENCES = 4


class ContextLengthExceeded(BadRequest):
    """The prompt, or the prompt plus ``max_tokens``, does not fit the model's context (OpenAI's
    ``code``: ``context_length_exceeded``)."""

    code = "context_length_exceeded"


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens. ``temperature`` 0 is greedy (argmax, as transformers'
    ``do_sample=False``); otherwise sampled with ``top_p``/``top_k`` (0: off) from ``seed``
    (None: a fresh one per request). A None setting is the model's default
    (:meth:`GenerationModel.resolve`)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Generation:
    """One request's generation: iterate for the text deltas; after the last one,
    ``finish_reason`` (``"stop"``: EOS or a stop sequence, ``"length"``: the budget or the
    context), ``text`` and the token counts are set."""

    prompt_tokens: int
    _deltas: Iterator[str]
    text: str = ""
    completion_tokens: int = 0
    finish_reason: str | None = None
    max_tokens: int = 0

    def __iter__(self) -> Iterator[str]:
        for delta in self._deltas:
            self.text += delta
            yield delta

    def run(self) -> Generation:
        """Generate to the end (no streaming); returns self."""
        for _ in self:
            pass
        return self

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


class GenerationModel(ServableBase):
    """The ``generation/`` folder of a built model, loaded once per process."""

    task_name = "generation"
    kind = None

    def __init__(self, manifest: Manifest, folder: Path, *, threads: int) -> None:
        import onnxruntime_genai as og

        self.manifest = manifest
        self.folder = folder
        self.threads = threads
        self._output_names = [s.name for s in SIGNATURE_OUTPUTS]
        block = manifest.extra.get(MANIFEST_BLOCK) or {}
        self.block = block
        #: the task's record, as other tasks keep theirs (the OpenAI protocol reads ``task``)
        self.task: dict[str, Any] = {"task": self.task_name, **block}
        self.execution_provider = provider.requested()
        built = provider.built_for(folder, block)
        if self.execution_provider == provider.CUDA and built != provider.CUDA:
            raise ManifestError(
                f"{names.ENV_EXECUTION_PROVIDER}=cuda but model {manifest.name!r} was built for the CPU (fp32 "
                "activations; its attention has no CUDA kernel in fp32). Rebuild it with a GPU instance_type "
                "(ml.g*/ml.p*) in the catalog: `modelfn build` then makes the CUDA variant.")
        config = og.Config(str(folder))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        self._og = og
        self._model = provider.open_model(og, config, self.execution_provider, folder)
        if built == provider.CUDA and self.execution_provider == provider.CPU:
            provider.log.warning("model %s was built for CUDA and runs on the CPU here (%s=%s): fp16 "
                                 "activations on the CPU are slower than the CPU build", manifest.name,
                                 names.ENV_EXECUTION_PROVIDER, self.execution_provider)
        provider.log.info("model %s: onnxruntime-genai %s runs its decoder on %s (built for %s)", manifest.name,
                          getattr(og, "__version__", "?"), self._model.device_type, built)
        genai = _read(folder / "genai_config.json").get("model", {})
        self.context_length = int(block.get("max_context") or genai.get("context_length") or 0)
        if genai.get("context_length"):
            self.context_length = min(self.context_length, int(genai["context_length"]))
        eos = block.get("eos_token_ids") or genai.get("eos_token_id") or []
        self.eos_ids = frozenset(int(i) for i in (eos if isinstance(eos, list) else [eos]))
        self.codec = TextCodec(folder)
        self.defaults = _defaults(folder, block)
        template = find_template(folder, self.codec.config)
        self.chat = template and ChatTemplate(
            template, bos_token=special_token(self.codec.config, "bos_token"),
            eos_token=special_token(self.codec.config, "eos_token"))

    # --- the Servable interface (V2 metadata, infer, batch rows) --------------------------
    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return SIGNATURE_INPUTS

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return SIGNATURE_OUTPUTS

    def validate_inputs(self, inputs: Mapping[str, np.ndarray], *,
                        allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        if TEXT_INPUT not in inputs or set(inputs) - {TEXT_INPUT, PARAMETERS}:
            raise BadRequest(f"model {self.name!r} takes one input, {TEXT_INPUT!r} (BYTES: the prompts); "
                             f"got {sorted(inputs)}.")
        feed = {TEXT_INPUT: self.check_value(SIGNATURE_INPUTS[0], np.asarray(inputs[TEXT_INPUT]))}
        if PARAMETERS in inputs:
            params = np.asarray(inputs[PARAMETERS], dtype=object).ravel()
            if len(params) != len(feed[TEXT_INPUT]) or not all(isinstance(p, dict) for p in params):
                raise BadRequest(f"{PARAMETERS!r} must hold one settings object per prompt.")
            feed[PARAMETERS] = params
        return feed

    def check_value(self, spec: TensorSpec, arr: np.ndarray, *, allow_nonfinite: bool = False) -> np.ndarray:
        if arr.dtype.kind not in "OUS":
            raise BadRequest(f"input {spec.name!r} must be BYTES (UTF-8 prompts); got {arr.dtype}.")
        out = []
        for v in arr.ravel().tolist():
            try:
                out.append(v if isinstance(v, str) else bytes(v).decode("utf-8"))
            except (UnicodeDecodeError, TypeError):
                raise BadRequest(f"input {spec.name!r} holds an element that is not UTF-8 text; send "
                                 "the prompts as UTF-8 strings.") from None
        if not out:
            raise BadRequest(f"input {spec.name!r} is empty; send at least one prompt.")
        return np.array(out, dtype=object)

    def run(self, feed: Mapping[str, np.ndarray],
            output_names: Sequence[str] | None = None, *, sampling: Sampling | None = None) -> dict[str, np.ndarray]:
        """Each prompt of ``text_input`` → its completion in ``text_output``, with its
        ``finish_reason`` and token counts (the catalog's defaults, ``sampling``, or each row's
        ``parameters``). Every row is checked before the first is generated."""
        from layers.generation.options import sampling as parse_settings

        names_out = self.validate_output_names(output_names)
        prompts = feed[TEXT_INPUT].tolist()
        rows = feed.get(PARAMETERS)
        gens = []
        for i, prompt in enumerate(prompts):
            settings = rows[i] if rows is not None else None
            if settings is None:
                gens.append(self.complete(prompt, sampling or Sampling()))
            elif settings.get("messages") is not None:
                ids = self.chat_prompt(settings["messages"])
                gens.append(self.generate(ids, self.chat_sampling(ids, parse_settings(settings))))
            else:
                gens.append(self.complete(prompt, parse_settings(settings)))
        for gen in gens:
            gen.run()
        out = {TEXT_OUTPUT: np.array([g.text for g in gens], dtype=object),
               FINISH_REASON: np.array([g.finish_reason for g in gens], dtype=object),
               PROMPT_TOKENS: np.array([g.prompt_tokens for g in gens], dtype=np.int64),
               COMPLETION_TOKENS: np.array([g.completion_tokens for g in gens], dtype=np.int64)}
        return {name: out[name] for name in names_out}

    def request_options(self, parameters: Mapping[str, Any]) -> dict[str, Any] | None:
        """A V2 ``infer`` request's ``parameters`` (the protocol's own flags taken out) →
        :meth:`run`'s keyword arguments: the settings for every prompt of the request. An
        unknown or bad setting is a 400 naming it; scheduling hints Triton's clients send
        (``priority``, ``timeout``) are accepted and have no effect here (no queue)."""
        from layers.generation.options import parameters as settings

        if not parameters:
            return None
        return {"sampling": settings(parameters, where="the request's \"parameters\"",
                                     ignored=("priority", "timeout"))}

    def primer_inputs(self) -> dict[str, np.ndarray] | None:
        """A two-token greedy generation: the loop, the KV cache and the tokenizer all run once
        before a snapshot, without spending the init on a full default-length completion."""
        params = np.empty(1, dtype=object)
        params[0] = {"max_tokens": 2, "temperature": 0}
        return {TEXT_INPUT: np.array(["Hello"], dtype=object), PARAMETERS: params}

    # --- generation ------------------------------------------------------------------------
    def complete(self, prompt: str, sampling: Sampling) -> Generation:
        """A text prompt (special tokens added as the tokenizer's post-processor says)."""
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("the prompt is empty; send the text to continue.")
        return self.generate(self.codec.encode(prompt), sampling)

    def chat_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        """Chat messages → prompt ids through the model's chat template (400 without one)."""
        if not self.chat:
            raise BadRequest(f"model {self.name!r} has no chat template (its tokenizer folder has neither "
                             "chat_template.jinja nor tokenizer_config.json's chat_template), so it cannot "
                             "take chat messages; send a plain prompt to /completions instead.")
        return self.codec.encode(self.chat.render(messages), special=False)

    def chat_sampling(self, prompt_ids: list[int], sampling: Sampling) -> Sampling:
        """A chat's budget when the request names none: what the context still holds (OpenAI's
        chat default), unless the catalog's ``max_tokens`` says less."""
        if sampling.max_tokens is not None:
            return sampling
        room = self.context_length - len(prompt_ids)
        return replace(sampling, max_tokens=max(1, min(room, int(self.defaults.get("max_tokens", room)))))

    def resolve(self, sampling: Sampling) -> Sampling:
        """``sampling`` with the catalog's / generation_config's defaults for what a request
        left unset (None)."""
        d = self.defaults
        return Sampling(
            max_tokens=sampling.max_tokens,
            temperature=d.get("temperature", 1.0) if sampling.temperature is None else sampling.temperature,
            top_p=d.get("top_p", 1.0) if sampling.top_p is None else sampling.top_p,
            top_k=d.get("top_k", 0) if sampling.top_k is None else sampling.top_k,
            seed=sampling.seed, stop=sampling.stop)

    def generate(self, prompt_ids: list[int], sampling: Sampling) -> Generation:
        """Prompt ids → a :class:`Generation` (nothing runs until it is iterated). Checks the
        prompt and budget against the context first: a 400 comes before any token."""
        sampling = self.resolve(sampling)
        n = len(prompt_ids)
        if n == 0:
            raise BadRequest("the prompt has no tokens; send some text.")
        room = self.context_length - n
        if room < 1:
            raise ContextLengthExceeded(f"the prompt is {n} tokens; this model's maximum context length is "
                                        f"{self.context_length} tokens. Shorten the prompt.")
        budget = sampling.max_tokens
        if budget is None:
            budget = min(int(self.defaults.get("max_tokens", DEFAULT_MAX_TOKENS)), room)
        elif budget > room:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{n + budget} tokens ({n} in the prompt, {budget} for the completion). Reduce the prompt or "
                f"max_tokens (at most {room} here).")
        gen = Generation(prompt_tokens=n, _deltas=iter(()), max_tokens=budget)
        gen._deltas = self._loop(gen, prompt_ids, sampling, budget)
        return gen

    def _loop(self, gen: Generation, prompt_ids: list[int], sampling: Sampling, budget: int) -> Iterator[str]:
        og = self._og
        params = og.GeneratorParams(self._model)
        options: dict[str, Any] = {"max_length": len(prompt_ids) + budget, "batch_size": 1}
        if sampling.greedy:
            options["do_sample"] = False
        else:
            # unseeded: from the OS, not Python's PRNG, whose state a SnapStart snapshot would
            # hand identically to every restored instance
            seed = sampling.seed if sampling.seed is not None else secrets.randbits(31)
            options.update(do_sample=True, temperature=float(sampling.temperature), top_p=float(sampling.top_p),
                           top_k=int(sampling.top_k), random_seed=int(seed) & 0x7FFFFFFF)
        params.set_search_options(**options)
        generator = og.Generator(self._model, params)
        detok = Detokenizer(self.codec, sampling.stop)
        generator.append_tokens(np.asarray(prompt_ids, dtype=np.int32))
        finish = LENGTH
        while gen.completion_tokens < budget and not generator.is_done():
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            gen.completion_tokens += 1
            if token in self.eos_ids:
                finish = STOP
                break
            delta = detok.push(token)
            if delta:
                yield delta
            if detok.stopped is not None:
                finish = STOP
                break
        if tail := detok.finish():
            yield tail
        gen.finish_reason = finish


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _defaults(folder: Path, block: Mapping[str, Any]) -> dict[str, Any]:
    """Sampling defaults: the catalog's (``generation.defaults`` in the manifest) over the
    model's ``generation_config.json`` (temperature/top_p/top_k when it samples; greedy when
    it says ``do_sample: false``), over OpenAI's (temperature 1)."""
    out: dict[str, Any] = {}
    gc = _read(folder / "generation_config.json")
    if gc.get("do_sample") is False:
        out["temperature"] = 0.0
    elif gc.get("do_sample"):
        for key in ("temperature", "top_p", "top_k"):
            if isinstance(gc.get(key), int | float) and not isinstance(gc.get(key), bool):
                out[key] = gc[key]
    if block.get("max_tokens_default"):  # the catalog's generation.max_tokens (infra/kinds/generation.py)
        out["max_tokens"] = int(block["max_tokens_default"])
    for key, value in (block.get("defaults") or {}).items():
        if key in ("temperature", "top_p", "top_k", "max_tokens") and value is not None:
            out[key] = value
    return out


def load(model_dir: str | Path, manifest: Manifest, *, threads: int) -> GenerationModel:
    folder = Path(model_dir) / FOLDER
    if not (folder / "genai_config.json").is_file():
        raise ManifestError(f"{folder} has no genai_config.json; a generative model's build output holds a "
                            f"{FOLDER}/ folder onnxruntime-genai opens. Rebuild it with `modelfn build`.")
    return GenerationModel(manifest, folder, threads=threads)
