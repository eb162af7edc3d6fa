"""Tiny trained GPT-2 / Llama / Qwen2 directories for tests (made from configs, nothing
downloaded): the same makers as the sample catalog's ``tiny-decoder``, :mod:`samples.decoder`.

    from tests.helpers.decoders import make_decoder, greedy_text
    path = make_decoder("llama", tmp_path / "llama")
    greedy_text(path, "the quick brown", max_new_tokens=12)  # transformers' reference text
"""

from samples.decoder import (
    CHAT_TEMPLATE,
    CORPUS,
    EOS,
    FAMILIES,
    greedy_ids,
    greedy_text,
    make_decoder,
)

__all__ = ["CHAT_TEMPLATE", "CORPUS", "EOS", "FAMILIES", "greedy_ids", "greedy_text", "make_decoder"]
