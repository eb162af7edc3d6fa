"""Tiny embedding and token-classification directories, made from configs in tmp (nothing downloaded).

``make_sentence_transformer`` writes what ``SentenceTransformer.save`` writes for a random
BERT + Pooling (+ Normalize); ``make_token_classifier`` a random BertForTokenClassification
with BIO labels. Both use the WordPiece tokenizer of :mod:`tests.text.tiny_hf`.
"""

from __future__ import annotations

from pathlib import Path

from tests.text.tiny_hf import SPECIAL, WORDS, make_tokenizer

NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
SEARCH_TEXTS = [
    "a great movie", "the plot was boring", "i loved the music", "terrible acting and bad story",
    "not very good", "really great film", "this is awful", "the story was fine",
    "so much love for this movie", "hated it", "good acting", "the music was too much",
    "the film was great", "a boring plot", "bad music", "this movie is good", "i hated the acting",
    "awful film", "the story is great", "not a bad movie", "really boring", "the acting was fine",
]


def _bert_config(**extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=len(SPECIAL) + len(WORDS), hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                      initializer_range=0.2, **extra)


def _fast_tokenizer(directory: Path):
    from transformers import PreTrainedTokenizerFast

    make_tokenizer(directory)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), unk_token="[UNK]",
                                  pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                  model_max_length=64)
    tok.save_pretrained(directory)
    return tok


def make_sentence_transformer(directory: Path, *, pooling: str = "mean", normalize: bool = True,
                              seed: int = 3) -> Path:
    """``SentenceTransformer.save`` of a random BERT with ``pooling`` (and Normalize)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertModel

    base = directory.parent / f"{directory.name}-base"
    _fast_tokenizer(base)
    torch.manual_seed(seed)
    BertModel(_bert_config()).eval().save_pretrained(base)
    transformer = Transformer(str(base), max_seq_length=64)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling)]
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(directory))
    return directory


def make_token_classifier(directory: Path, *, seed: int = 4) -> Path:
    """``save_pretrained`` of a random BertForTokenClassification (BIO labels) + tokenizer."""
    import torch
    from transformers import BertForTokenClassification

    _fast_tokenizer(directory)
    torch.manual_seed(seed)
    config = _bert_config(num_labels=len(NER_LABELS), id2label=dict(enumerate(NER_LABELS)),
                          label2id={n: i for i, n in enumerate(NER_LABELS)})
    BertForTokenClassification(config).eval().save_pretrained(directory)
    return directory


def make_bare_encoder(directory: Path, *, seed: int = 5) -> Path:
    """``save_pretrained`` of a random BertModel (feature extraction) + tokenizer."""
    import torch
    from transformers import BertModel

    _fast_tokenizer(directory)
    torch.manual_seed(seed)
    BertModel(_bert_config()).eval().save_pretrained(directory)
    return directory
