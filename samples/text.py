"""The sample catalog's text classifier: a tiny BERT trained in seconds on template sentences.

``make_sentiment(out)`` writes a Hugging Face model directory (``config.json`` with
``id2label``, ``model.safetensors``, a WordPiece ``tokenizer.json``) that ``source: hf:<dir>``
builds, plus ``sentiment_val.jsonl`` (texts with labels, for the gate) and
``sentiment_calib.txt``. Everything is generated (no download, nothing binary committed):
sentences are made from word lists, so the model learns which words are positive.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["great", "good", "wonderful", "excellent", "fun", "loved", "enjoyed", "brilliant", "moving", "superb"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dull", "hated", "disliked", "poor", "weak", "tedious"]
SUBJECTS = ["the movie", "this film", "the plot", "the acting", "the music", "the story", "the ending", "it"]
TEMPLATES = ["{s} was {w}", "{s} is {w}", "really {w}", "{s} was really {w}", "i thought {s} was {w}",
             "what a {w} film", "{w} , just {w}", "honestly {s} is {w}"]
LABELS = ("negative", "positive")
SEED = 0


def sentences(rng: random.Random, n: int) -> list[tuple[str, int]]:
    rows = []
    for _ in range(n):
        label = rng.randrange(2)
        words = POSITIVE if label else NEGATIVE
        rows.append((rng.choice(TEMPLATES).format(s=rng.choice(SUBJECTS), w=rng.choice(words)), label))
    return rows


def vocabulary() -> list[str]:
    words = set(POSITIVE + NEGATIVE)
    for text in itertools.chain(SUBJECTS, TEMPLATES):
        words.update(w for w in text.replace("{s}", "").replace("{w}", "").split() if w)
    return SPECIAL + sorted(words)


def make_tokenizer(vocab: list[str], out: Path) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    ids = {t: i for i, t in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok.save(str(out / "tokenizer.json"))
    return out / "tokenizer.json"


def make_sentiment(out: Path, *, epochs: int = 3) -> str:
    """Train and save the classifier into ``out/sentiment``; returns a one-line summary."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    rng = random.Random(SEED)
    torch.manual_seed(SEED)
    vocab = vocabulary()
    model_dir = out / "sentiment"
    tok = Tokenizer.from_file(str(make_tokenizer(vocab, model_dir)))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=256, max_position_embeddings=64, num_labels=2,
                        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    model = BertForSequenceClassification(config)
    train, val = sentences(rng, 256), sentences(rng, 128)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        rng.shuffle(train)
        for start in range(0, len(train), 32):
            batch = train[start:start + 32]
            enc = tok.encode_batch([t for t, _ in batch])
            out_ = model(input_ids=torch.tensor([e.ids for e in enc]),
                         attention_mask=torch.tensor([e.attention_mask for e in enc]),
                         labels=torch.tensor([y for _, y in batch]))
            opt.zero_grad()
            out_.loss.backward()
            opt.step()
    model.eval()
    enc = tok.encode_batch([t for t, _ in val])
    with torch.no_grad():
        pred = model(input_ids=torch.tensor([e.ids for e in enc]),
                     attention_mask=torch.tensor([e.attention_mask for e in enc])).logits.argmax(1)
    accuracy = float((pred == torch.tensor([y for _, y in val])).float().mean())
    model.save_pretrained(model_dir)
    (out / "sentiment_val.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": LABELS[y]}) + "\n" for t, y in val))
    (out / "sentiment_calib.txt").write_text("".join(t + "\n" for t, _ in train[:64]))
    return f"sentiment: accuracy {accuracy:.3f} on {len(val)} held-out sentences"
