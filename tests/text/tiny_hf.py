"""A tiny Hugging Face text classifier and image classifier, made from configs in tmp.

Random weights (seeded), a WordPiece vocabulary of a few dozen words; nothing is downloaded.
``initializer_range`` is large so that the random classifier's logits are far apart: the
gate then measures int8 error rather than coin flips between near-tied classes.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["the", "a", "an", "this", "that", "movie", "film", "plot", "acting", "music", "story", "was", "is", "were", "great", "good", "fine", "bad", "awful", "terrible", "boring", "love", "loved", "hate", "hated", "it", "and", "not", "very", "really", "so", "much", "too"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = ("negative", "positive")
SENTENCES = [
    "a great movie", "the plot was boring", "i loved the music", "terrible acting and bad story",
    "not very good", "really great film", "this is awful", "the story was fine",
    "so much love for this movie", "hated it", "good acting", "the music was too much",
]


def make_tokenizer(directory: Path) -> Path:
    """A BERT-style WordPiece ``tokenizer.json`` over :data:`WORDS` (lower-cased, [CLS] x [SEP])."""
    from samples.text import make_tokenizer as wordpiece

    return wordpiece([*SPECIAL, *WORDS], directory)


def make_text_classifier(directory: Path, *, hidden: int = 64, layers: int = 2, seed: int = 2) -> Path:
    """``save_pretrained`` of a random BertForSequenceClassification + its WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    make_tokenizer(directory)
    config = BertConfig(
        vocab_size=len(SPECIAL) + len(WORDS), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=hidden * 4, max_position_embeddings=64,
        num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)}, initializer_range=0.2,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    return directory


def write_texts(path: Path, texts=SENTENCES) -> Path:
    path.write_text("\n".join(texts) + "\n")
    return path
