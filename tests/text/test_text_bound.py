"""Text is cut to what the tokenizer can use before tokenizing, and the cut never changes the tokens."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer

from layers.errors import BadRequest
from layers.kinds.text import CHARS_PER_TOKEN, TextPreprocessor
from tests.text.tiny_hf import WORDS, make_tokenizer

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
random.seed(3)
TEXTS = [
    "great movie " * 1000,                       # long: only the first words can be used
    " " * 5000 + "the plot was boring",          # whitespace before the words: the prefix grows
    "x" * 300 + " good film",                    # a word longer than WordPiece reads ([UNK])
    "zzzzzzzz" * 1000 + " great",                # no whitespace near the cut
    " ".join(random.choice(WORDS) for _ in range(40)),
    "short",
]


class Recording:
    """A tokenizer wrapper that remembers the longest text it was asked to encode."""

    def __init__(self, tok):
        self.tok, self.longest = tok, 0

    def encode_batch(self, texts):
        self.longest = max([self.longest, *map(len, texts)])
        return self.tok.encode_batch(texts)

    def encode(self, text):
        self.longest = max(self.longest, len(text))
        return self.tok.encode(text)


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("padding", ["longest", "max_length"])
def test_tokens_are_those_of_the_whole_text(tokenizer_path, padding):
    pre = TextPreprocessor(tokenizer_path, {"max_length": 16, "truncation": True, "padding": padding}, INPUTS)
    whole = Tokenizer.from_file(str(tokenizer_path))
    whole.enable_truncation(16)
    out = pre(TEXTS)
    for i, text in enumerate(TEXTS):
        got = [t for t, m in zip(out["input_ids"][i], out["attention_mask"][i], strict=True) if m]
        assert got == whole.encode(text).ids, text[:40]


def test_a_5_mb_text_is_never_tokenized_whole(tokenizer_path):
    pre = TextPreprocessor(tokenizer_path, {"max_length": 64, "truncation": True, "padding": "longest"}, INPUTS)
    pre.tokenizer = recording = Recording(pre.tokenizer)
    out = pre(["the movie was great and " * 220_000])  # ~5 MB
    assert out["input_ids"].shape == (1, 64)
    assert recording.longest <= CHARS_PER_TOKEN * 64


def test_without_truncation_a_long_text_is_a_400_read_from_a_prefix(tokenizer_path):
    pre = TextPreprocessor(tokenizer_path, {"max_length": 16, "truncation": False, "padding": "longest"}, INPUTS)
    pre.tokenizer = recording = Recording(pre.tokenizer)
    with pytest.raises(BadRequest, match="has at least .* tokens but the model takes at most 16"):
        pre(["good " * 1_000_000])
    assert recording.longest <= CHARS_PER_TOKEN * 16
    # under the limit, even behind a long run of spaces, is served whole
    out = pre([" " * 5000 + "good film"])
    assert [t for t, m in zip(out["input_ids"][0], out["attention_mask"][0], strict=True) if m] == \
        Tokenizer.from_file(str(tokenizer_path)).encode(" " * 5000 + "good film").ids
