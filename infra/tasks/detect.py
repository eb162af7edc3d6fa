"""What a saved model directory serves, decided as the library that saved it decides it.

* a **sentence-transformers** directory (``modules.json``: a Transformer module, then
  ``Pooling`` (``1_Pooling/config.json``) and optionally ``Normalize``) is an embedding model
  with its own pooling and normalization;
* ``*ForSequenceClassification`` is classification (labels from ``id2label``);
* ``*ForTokenClassification`` is token classification (entities, labels from ``id2label``);
* ``*ForCausalLM`` / ``GPT2LMHeadModel`` (GPT-2, Llama, Qwen2, Mistral, Phi, Gemma ... families:
  :data:`infra.kinds.generation.BUILDER_FAMILIES`) is generation (an onnxruntime-genai folder);
* a plain encoder (``BertModel``, ``RobertaModel``, ...: an architecture that is the bare
  model) is feature extraction, pooled as the catalog's ``embedding.pooling`` says (mean).

A catalog ``task:`` overrides the detected task when the directory can serve it (any
transformers model can give pooled hidden states, so classification and token-classification
directories can serve ``embeddings``/``feature-extraction``; a bare encoder has no head to
classify with, and a sentence-transformers directory holds only an encoder); otherwise the
build fails saying why and what the directory does serve.

The tokenizer (``tokenizer.json``) and the longest input (``sentence_bert_config.json``'s
``max_seq_length``, else ``tokenizer_config.json``'s ``model_max_length``, capped by the
model's ``max_position_embeddings``) come from the directory too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLASSIFICATION = "classification"
EMBEDDINGS = "embeddings"
TOKEN_CLASSIFICATION = "token-classification"
FEATURE_EXTRACTION = "feature-extraction"
GENERATION = "generation"
TASKS = (CLASSIFICATION, EMBEDDINGS, TOKEN_CLASSIFICATION, FEATURE_EXTRACTION, GENERATION)
#: tasks whose served output is one pooled vector per text (``embedding``)
POOLED = (EMBEDDINGS, FEATURE_EXTRACTION)
#: sentence-transformers' pooling modes, in the order it concatenates them
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
DEFAULT_POOLING = "mean"
#: a tokenizer_config ``model_max_length`` above this is transformers' "no limit" sentinel
_NO_LIMIT = 1_000_000
_ST_TRANSFORMER = "Transformer"
_ST_POOLING = "Pooling"
_ST_NORMALIZE = "Normalize"


class TaskError(ValueError):
    """The directory cannot serve the task; the message says what it serves and how to fix it."""


@dataclass(frozen=True)
class HfTask:
    """What the build exports and serves for one directory."""

    task: str
    model_dir: Path  # where the transformers weights and config are (an ST Transformer module's path)
    architecture: str
    detected: str  # the task the directory itself implies, and why (for the manifest)
    pooling: tuple[str, ...] = ()
    normalize: bool = False
    max_length: int | None = None
    tokenizer: Path | None = None
    labels: tuple[str, ...] = ()
    sentence_transformers: bool = False
    #: sizes the vector may be cut to (Matryoshka): the catalog's ``embedding.matryoshka_dims``
    #: and a sentence-transformers directory's saved ``truncate_dim``
    matryoshka_dims: tuple[int, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``task`` record (runtime reads ``task``, ``dimensions``, ``normalize``)."""
        out: dict[str, Any] = {"task": self.task, "detected": self.detected, "architecture": self.architecture}
        if self.task in POOLED:
            out.update(pooling=list(self.pooling), normalize=self.normalize)
            if self.matryoshka_dims:
                out["matryoshka_dims"] = list(self.matryoshka_dims)
        if self.labels:
            out["labels"] = list(self.labels)
        if self.max_length:
            out["max_length"] = self.max_length
        return out


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TaskError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(data, (dict, list)):
        raise TaskError(f"{path} holds {type(data).__name__}, not a JSON object")
    return data


def is_sentence_transformers(directory: Path) -> bool:
    return (Path(directory) / "modules.json").is_file()


def _module_kind(entry: dict[str, Any]) -> str:
    """``sentence_transformers.models.Pooling`` / ``...modules.pooling.Pooling`` → ``Pooling``."""
    return str(entry.get("type", "")).rsplit(".", 1)[-1]


def st_pooling(config: dict[str, Any], where: Path) -> tuple[str, ...]:
    """A ``1_Pooling/config.json`` (the v3-v5 ``pooling_mode_*_tokens`` flags or v6's
    ``pooling_mode``) → the modes, in sentence-transformers' concatenation order."""
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:
        flags = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                 "mean": "pooling_mode_mean_tokens", "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                 "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
        modes = [m for m, key in flags.items() if config.get(key)]
    aliases = {"mean_tokens": "mean", "max_tokens": "max", "cls_token": "cls", "mean_sqrt_len": "mean_sqrt_len_tokens"}
    modes = [aliases.get(m, m) for m in modes]
    bad = [m for m in modes if m not in POOLING_MODES]
    if bad or not modes:
        raise TaskError(f"{where}: pooling mode(s) {bad or modes} not supported; modelfn pools with "
                        f"{', '.join(POOLING_MODES)}")
    return tuple(m for m in POOLING_MODES if m in modes)


def _sentence_transformers(directory: Path) -> tuple[Path, tuple[str, ...], bool, int | None]:
    """(Transformer module dir, pooling modes, normalize, max_seq_length) of an ST directory."""
    modules = _json(directory / "modules.json")
    if not isinstance(modules, list) or not modules:
        raise TaskError(f"{directory}/modules.json lists no modules; save the model with SentenceTransformer.save")
    kinds = [_module_kind(m) for m in modules]
    supported = (_ST_TRANSFORMER, _ST_POOLING, _ST_NORMALIZE)
    if kinds[:1] != [_ST_TRANSFORMER] or any(k not in supported for k in kinds) or _ST_POOLING not in kinds:
        raise TaskError(f"{directory}/modules.json chains {kinds}; modelfn serves sentence-transformers models "
                        "made of a Transformer, a Pooling and optionally a Normalize module (Dense, "
                        "custom and multi-modal modules are not exported yet)")
    model_dir = directory / modules[0].get("path", "")
    pooling_entry = modules[kinds.index(_ST_POOLING)]
    pooling = st_pooling(_json(directory / pooling_entry.get("path", "1_Pooling") / "config.json"),
                         directory / pooling_entry.get("path", "1_Pooling"))
    max_len = None
    for cfg in (model_dir / "sentence_bert_config.json", directory / "sentence_bert_config.json"):
        if cfg.is_file():
            value = _json(cfg).get("max_seq_length")
            if isinstance(value, int) and value > 0:
                max_len = value
                break
    return model_dir, pooling, _ST_NORMALIZE in kinds, max_len


def _max_length(model_dir: Path, config: dict[str, Any], st_max: int | None) -> int | None:
    limit = config.get("max_position_embeddings")
    limit = limit if isinstance(limit, int) and limit > 0 else None
    want = st_max
    tok_cfg = model_dir / "tokenizer_config.json"
    if want is None and tok_cfg.is_file():
        value = _json(tok_cfg).get("model_max_length")
        want = value if isinstance(value, int) and 0 < value < _NO_LIMIT else None
    if want is None:
        want = limit
    if want is not None and limit is not None:
        want = min(want, limit)
    return want


def _labels(config: dict[str, Any]) -> tuple[str, ...]:
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    return ()


#: Architectures modelfn knows but does not serve, by class-name suffix: (what the model is,
#: what it would be served as, the work or catalog change that would serve it). One line each,
#: so the build says why it stops instead of an exporter's traceback.
ENCODER_DECODER = ("ForConditionalGeneration", "ForSeq2SeqLM", "EncoderDecoderModel", "MTModel")
NOT_SERVED: tuple[tuple[tuple[str, ...], str, str, str], ...] = (
    (ENCODER_DECODER, "an encoder-decoder model", "sequence-to-sequence generation (translation, summarization)",
     "encoder-decoder generation (two exported graphs and a decoding loop) is not built yet; for "
     "classification save a *ForSequenceClassification model"),
    (("ForMaskedLM", "ForPreTraining"), "a masked language model", "fill-mask (token predictions)",
     "fill-mask is not served; save the bare encoder (model.base_model.save_pretrained(dir)) to serve "
     "feature-extraction, or a *ForSequenceClassification / *ForTokenClassification model"),
    (("ForQuestionAnswering",), "an extractive question-answering model",
     "question answering (answer spans from start/end logits)",
     "question answering is not served yet; save a *ForSequenceClassification model or a bare encoder"),
    (("ForMultipleChoice", "ForNextSentencePrediction"), "a sentence-pair scoring model",
     "multiple-choice / next-sentence scores", "pair inputs are not served yet; save a "
     "*ForSequenceClassification model"),
)
SERVED = ("*ForSequenceClassification and *ForImageClassification (classification), *ForTokenClassification "
          "(entities), bare encoders such as BertModel (feature extraction), sentence-transformers "
          "directories (embeddings) and causal language models such as GPT2LMHeadModel, LlamaForCausalLM "
          "and Qwen2ForCausalLM (generation)")
CAUSAL_LM = ("ForCausalLM", "LMHeadModel")


def not_served(arch: str, config: dict[str, Any], where: Path) -> str | None:
    """The one line saying why ``arch`` is not served (None: it is). A config with
    ``is_encoder_decoder`` (T5Model, BartModel) is an encoder-decoder whatever its class."""
    for suffixes, what, served_as, change in NOT_SERVED:
        if arch.endswith(suffixes) or (suffixes is ENCODER_DECODER and config.get("is_encoder_decoder")):
            return (f"{where}: architecture {arch} is {what}; it would be served as {served_as}, which "
                    f"modelfn does not serve: {change}.")
    return None


def _architecture_task(arch: str, where: Path, config: dict[str, Any] | None = None) -> str:
    if (line := not_served(arch, config or {}, where)) is not None:
        raise TaskError(line)
    if arch.endswith(CAUSAL_LM):
        from infra.kinds.generation import family_of, supported

        if family_of(arch) is None:
            raise TaskError(f"{where}: architecture {arch} is a causal language model; it would be served as "
                            "text generation, which modelfn cannot build for this family yet (onnxruntime-genai's "
                            f"model builder does not know it): modelfn builds {supported()}.")
        return GENERATION
    if arch.endswith(("ForSequenceClassification", "ForImageClassification")):
        return CLASSIFICATION
    if arch.endswith("ForTokenClassification"):
        return TOKEN_CLASSIFICATION
    if arch.endswith("Model") and "For" not in arch and not arch.endswith(("LMHeadModel", "PreTrainedModel")):
        return FEATURE_EXTRACTION
    raise TaskError(f"{where}: architecture {arch} is not one modelfn serves; it serves {SERVED}: save one "
                    "of those, or export the model to .onnx yourself and use source: model.onnx.")


def detect(directory: str | Path, *, task: str | None = None, pooling: str | None = None,
           normalize: bool | None = None, matryoshka_dims: tuple[int, ...] | None = None) -> HfTask:
    """The task ``directory`` serves (``task`` overrides it when the directory can serve it;
    ``pooling``/``normalize`` override the directory's for pooled tasks; ``matryoshka_dims``
    adds to a sentence-transformers directory's ``truncate_dim`` the sizes its vectors may be
    cut to)."""
    directory = Path(directory)
    if task is not None and task not in TASKS:
        raise TaskError(f"task {task!r} is not one modelfn serves; use one of {', '.join(TASKS)}")
    st = is_sentence_transformers(directory)
    if st:
        model_dir, st_pool, st_norm, st_max = _sentence_transformers(directory)
        config = _json(model_dir / "config.json")
        arch = (config.get("architectures") or ["?"])[0]
        detected, why = EMBEDDINGS, "sentence-transformers directory (modules.json)"
        if task in (CLASSIFICATION, TOKEN_CLASSIFICATION):
            raise TaskError(f"{directory} is a sentence-transformers embedding model ({'/'.join(st_pool)} "
                            f"pooling); it has no classification head, so it cannot serve task {task!r}. "
                            f"Remove 'task' (it serves {EMBEDDINGS}) or point source at a "
                            f"*For{'Token' if task == TOKEN_CLASSIFICATION else 'Sequence'}Classification directory")
    else:
        if not (directory / "config.json").is_file():
            raise TaskError(f"{directory} has no config.json (nor modules.json); point hf:<dir> at what "
                            "save_pretrained() or SentenceTransformer.save() wrote")
        model_dir, config = directory, _json(directory / "config.json")
        archs = config.get("architectures") or []
        if not archs:
            raise TaskError(f"{directory}/config.json names no architectures; save the model with "
                            "model.save_pretrained so config.json records its class")
        arch = archs[0]
        detected = _architecture_task(arch, directory, config)
        why = f"config.json architecture {arch}"
        st_pool, st_norm, st_max = (), False, None
        if (task == GENERATION) != (detected == GENERATION) and task is not None:
            raise TaskError(f"{directory} holds {arch} ({detected}); it cannot serve task {task!r}: "
                            + ("remove 'task' (it serves generation)" if detected == GENERATION else
                               "generation needs a causal language model (*ForCausalLM, GPT2LMHeadModel); "
                               f"remove 'task' (it serves {detected})"))
        if task in (CLASSIFICATION, TOKEN_CLASSIFICATION) and task != detected:
            raise TaskError(f"{directory} holds {arch} ({detected}); it has no "
                            f"{'token-' if task == TOKEN_CLASSIFICATION else 'sequence '}classification "
                            f"head, so it cannot serve task {task!r}. Remove 'task' (it serves {detected}"
                            f"{'' if detected in POOLED else ', or embeddings/feature-extraction'}) or save a "
                            f"*For{'Token' if task == TOKEN_CLASSIFICATION else 'Sequence'}Classification model")
    chosen = task or detected
    if pooling is not None and pooling not in POOLING_MODES:
        raise TaskError(f"embedding.pooling {pooling!r} is not a pooling mode; use one of {', '.join(POOLING_MODES)}")
    pool: tuple[str, ...] = ()
    norm = False
    cut = sorted(set(matryoshka_dims or ()) | set(_st_truncate_dim(directory) if st else ()), reverse=True)
    if chosen in POOLED:
        pool = (pooling,) if pooling else (st_pool or (DEFAULT_POOLING,))
        default_norm = st_norm if st else chosen == EMBEDDINGS
        norm = default_norm if normalize is None else normalize
    elif matryoshka_dims:
        raise TaskError(f"embedding.matryoshka_dims cuts embedding vectors; this model serves {chosen}: remove it")
    elif pooling is not None or normalize is not None:
        raise TaskError(f"the 'embedding' key (pooling/normalize) applies to embeddings and feature-extraction; "
                        f"this model serves {chosen}: remove it")
    tokenizer = model_dir / "tokenizer.json"
    if not tokenizer.is_file() and (directory / "tokenizer.json").is_file():
        tokenizer = directory / "tokenizer.json"
    return HfTask(task=chosen, model_dir=model_dir, architecture=arch, detected=f"{detected} ({why})",
                  pooling=pool, normalize=norm, max_length=_max_length(model_dir, config, st_max),
                  tokenizer=tokenizer if tokenizer.is_file() else None,
                  labels=_labels(config) if chosen in (CLASSIFICATION, TOKEN_CLASSIFICATION) else (),
                  sentence_transformers=st, matryoshka_dims=tuple(cut))


def _st_truncate_dim(directory: Path) -> tuple[int, ...]:
    """``truncate_dim`` a sentence-transformers directory was saved with
    (``config_sentence_transformers.json``): the size its owner cuts the vectors to."""
    path = directory / "config_sentence_transformers.json"
    value = _json(path).get("truncate_dim") if path.is_file() else None
    return (value,) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else ()
