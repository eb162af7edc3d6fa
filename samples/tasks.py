"""The sample catalog's embedding model and entity tagger, made in seconds (nothing downloaded).

* ``make_embedder(out)`` writes ``embedder/``, a sentence-transformers directory in the layout
  ``SentenceTransformer.save`` writes (``modules.json``, the BERT at the root, mean
  ``1_Pooling``, ``2_Normalize``): its encoder is the trained ``sentiment`` BERT's (so
  similar reviews land near each other), plus ``embedder_val.txt`` for the int8 gate.
* ``make_tagger(out)`` trains ``tagger/``, a BertForTokenClassification tagging people
  (``PER``) and places (``LOC``, multi-word ones as ``B-LOC I-LOC``) in template sentences,
  plus ``tagger_val.txt``. Needs ``make_sentiment`` to have run first (it reuses its tokenizer
  builder, not its weights).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from samples.text import SPECIAL, make_tokenizer, sentences

SEED = 0
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
PLACES = ["paris", "london", "berlin", "tokyo", "rome", "new york", "los angeles", "hong kong"]
TAG_TEMPLATES = ["{p} lives in {l}", "{p} flew to {l}", "i met {p} in {l}", "{p} and {q} visited {l}",
                 "yesterday {p} left {l}", "{l} is where {p} works", "we saw {p} near {l} today"]
NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def make_embedder(out: Path) -> str:
    """The sentiment BERT's encoder as a sentence-transformers embedding model."""
    from transformers import BertForSequenceClassification

    src, dst = out / "sentiment", out / "embedder"
    encoder = BertForSequenceClassification.from_pretrained(str(src), local_files_only=True).bert
    encoder.save_pretrained(dst)
    (dst / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    (dst / "vocab.txt").write_bytes((src / "vocab.txt").read_bytes())
    write_st_layout(dst, encoder.config.hidden_size, max_seq_length=64)
    rng = random.Random(SEED + 1)
    texts = sorted({t for t, _ in sentences(rng, 200)})[:96]
    (out / "embedder_val.txt").write_text("".join(t + "\n" for t in texts))
    return f"embedder: the sentiment encoder, mean pooling + normalize, {encoder.config.hidden_size} dims"


def write_st_layout(dst: Path, dimension: int, *, max_seq_length: int, pooling: str = "mean") -> None:
    """The files ``SentenceTransformer.save`` writes around a saved BERT and ``tokenizer.json``
    in ``dst`` (the v2-v5 layout, which every sentence-transformers release still loads):
    ``modules.json``, ``1_Pooling/config.json``, ``2_Normalize/``, the tokenizer config."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (dst / "modules.json").write_text(json.dumps(modules, indent=2))
    (dst / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                               "do_lower_case": False}))
    (dst / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizerFast", "model_max_length": max_seq_length, "do_lower_case": True,
        "unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
        "mask_token": "[MASK]"}))
    (dst / "1_Pooling").mkdir(exist_ok=True)
    (dst / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dimension, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (dst / "2_Normalize").mkdir(exist_ok=True)


def _tagged(rng: random.Random, n: int) -> list[tuple[list[str], list[str]]]:
    """n sentences as (words, BIO tags)."""
    rows = []
    for _ in range(n):
        template = rng.choice(TAG_TEMPLATES)
        p, q = rng.sample(PEOPLE, 2)
        fill = {"p": p, "q": q, "l": rng.choice(PLACES)}
        words, tags = [], []
        for piece in template.split():
            if piece.startswith("{"):
                key = piece[1]
                kind = "PER" if key in "pq" else "LOC"
                for i, w in enumerate(fill[key].split()):
                    words.append(w)
                    tags.append(("B-" if i == 0 else "I-") + kind)
            else:
                words.append(piece)
                tags.append("O")
        rows.append((words, tags))
    return rows


def make_tagger(out: Path, *, epochs: int = 4) -> str:
    """Train and save the entity tagger into ``out/tagger``; returns a one-line summary."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertForTokenClassification

    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    words = sorted({w for t in TAG_TEMPLATES for w in t.split() if not w.startswith("{")}
                   | {w for n in PEOPLE + PLACES for w in n.split()})
    model_dir = out / "tagger"
    tok = Tokenizer.from_file(str(make_tokenizer(SPECIAL + words, model_dir)))
    label_id = {n: i for i, n in enumerate(NER_LABELS)}
    config = BertConfig(vocab_size=len(SPECIAL) + len(words), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        num_labels=len(NER_LABELS), id2label=dict(enumerate(NER_LABELS)), label2id=label_id)
    model = BertForTokenClassification(config)
    train, val = _tagged(rng, 256), _tagged(rng, 64)

    def encode(batch):
        enc = tok.encode_batch([w for w, _ in batch], is_pretokenized=True)
        width = max(len(e.ids) for e in enc)
        ids, mask, labels = [], [], []
        for e, (_, tags) in zip(enc, batch, strict=True):
            pad = width - len(e.ids)
            ids.append(e.ids + [0] * pad)
            mask.append(e.attention_mask + [0] * pad)
            labels.append([label_id[tags[w]] if w is not None else -100 for w in e.word_ids] + [-100] * pad)
        return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        rng.shuffle(train)
        for start in range(0, len(train), 32):
            ids, mask, labels = encode(train[start:start + 32])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    ids, mask, labels = encode(val)
    with torch.no_grad():
        pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
    keep = labels != -100
    accuracy = float((pred[keep] == labels[keep]).float().mean())
    model.save_pretrained(model_dir)
    (out / "tagger_val.txt").write_text("".join(" ".join(w) + "\n" for w, _ in val))
    return f"tagger: token accuracy {accuracy:.3f} on {len(val)} held-out sentences"
