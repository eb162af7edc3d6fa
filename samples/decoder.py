"""Tiny causal language models (GPT-2, Llama, Qwen2 families) saved as Hugging Face directories:
the sample catalog's ``tiny-decoder`` (``make samples``) and the generation tests' models
(``tests/helpers/decoders.py``).

Every model is made from a config, nothing downloaded: a byte-level BPE tokenizer trained on
:data:`CORPUS` (its vocabulary holds only characters of the corpus, so every token decodes to
printable ASCII and no greedy output can split a multi-byte character), then the model
trained a few dozen steps on the same text so greedy continuations of corpus-like prompts are
words, not noise. Seeded: the same call writes the same weights.

    from samples.decoder import make_decoder, greedy_text
    path = make_decoder("llama", tmp_path / "llama")
    greedy_text(path, "the quick brown", max_new_tokens=12)  # transformers' reference text

``save_pretrained`` writes config.json, generation_config.json, model.safetensors,
tokenizer.json and tokenizer_config.json (with ``chat_template`` when one is given: by default
Qwen2 gets :data:`CHAT_TEMPLATE`, GPT-2 and Llama none, so both the chat route and its 400 can
be tested).
"""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("gpt2", "llama", "qwen2")
EOS = "<|endoftext|>"
#: Short, repetitive sentences: a 2-layer model learns them in seconds.
CORPUS = (
    "the quick brown fox jumps over the lazy dog.",
    "hello world, this is a tiny model.",
    "serverless models answer on lambda.",
    "the cat sat on the mat and the dog sat on the log.",
    "one two three four five six seven eight nine ten.",
    "models are built, quantized and served.",
)
#: A ChatML-style template (the form Qwen2 directories carry), rendered by transformers'
#: ``apply_chat_template`` and by genserve's runtime alike.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
_DEFAULT_TEMPLATE = {"gpt2": None, "llama": None, "qwen2": CHAT_TEMPLATE}
_VOCAB = 160
_CONTEXT = 128


def _tokenizer(chat_template: str | None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    chat_text = ["user: assistant: system:\n"] if chat_template else []
    tok.train_from_iterator(list(CORPUS) * 20 + chat_text,
                            trainers.BpeTrainer(vocab_size=_VOCAB, special_tokens=[EOS], show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS,
                                   model_max_length=_CONTEXT)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def _config(family: str, vocab: int, eos: int):
    common = {"vocab_size": vocab, "bos_token_id": eos, "eos_token_id": eos, "pad_token_id": eos}
    if family == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=_CONTEXT, n_inner=128, **common)
    if family == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=_CONTEXT, **common)
    if family == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=_CONTEXT, tie_word_embeddings=True,
                           **common)
    raise ValueError(f"family {family!r} is not one of {FAMILIES}")


def make_decoder(family: str, directory: str | Path, *, steps: int = 60, seed: int = 0,
                 chat_template: str | bool | None = True) -> Path:
    """A trained tiny ``family`` causal LM + tokenizer saved at ``directory``; returns it.

    ``chat_template``: True = the family's default (:data:`_DEFAULT_TEMPLATE`), None/False =
    none, a string = that template."""
    import torch
    from transformers import AutoModelForCausalLM

    if chat_template is True:
        chat_template = _DEFAULT_TEMPLATE.get(family)
    directory = Path(directory)
    tok = _tokenizer(chat_template or None)
    eos = tok.convert_tokens_to_ids(EOS)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(family, len(tok), eos))
    text = [s + EOS for s in CORPUS]
    batch = tok(text, return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = eos
    model.generation_config.bos_token_id = eos
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def greedy_ids(directory: str | Path, prompt: str, max_new_tokens: int = 16) -> list[int]:
    """transformers' ``generate(do_sample=False)`` new token ids for ``prompt``: the reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tok.eos_token_id)
    return [int(t) for t in out[0, ids.shape[1]:]]


def greedy_text(directory: str | Path, prompt: str, max_new_tokens: int = 16) -> str:
    """The text of :func:`greedy_ids` as transformers decodes it (special tokens skipped)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    return tok.decode(greedy_ids(directory, prompt, max_new_tokens), skip_special_tokens=True)


SAMPLE_FAMILY = "qwen2"
SAMPLE_PROMPTS = ("the quick brown", "hello world,", "one two three", "the cat sat", "models are",
                  "serverless models")


def make_sample(out: Path) -> str:
    """``decoder/`` (the Qwen2-family sample, with a chat template) + ``decoder_val.txt`` (its
    validation prompts, one a line) in ``out``."""
    import time

    t0 = time.perf_counter()
    path = make_decoder(SAMPLE_FAMILY, out / "decoder")
    (out / "decoder_val.txt").write_text("\n".join(SAMPLE_PROMPTS) + "\n")
    return (f"tiny-decoder ({SAMPLE_FAMILY}): {time.perf_counter() - t0:.1f} s, greedy "
            f"'the quick brown' → {greedy_text(path, 'the quick brown', 12)!r}")


if __name__ == "__main__":  # python -m samples.decoder OUT_DIR: all three, with their greedy text
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "decoders")
    for fam in FAMILIES:
        path = make_decoder(fam, out / fam)
        print(fam, path, repr(greedy_text(path, "the quick brown", 12)))
