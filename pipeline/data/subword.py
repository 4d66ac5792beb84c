"""Subword tokenization with SentencePiece (an open vocabulary for translation).

One unigram model per side is trained on the training split only. Pieces carry ``▁``
where a space preceded them, the same convention as the word tokenizer, so
:func:`pipeline.data.tokens.detokenize` undoes both. Normalisation is left to the corpus
adapters (rule ``identity``), so detokenizing gives back the text exactly. Training is
single-threaded and deterministic: the same sentences give the same model bytes.
"""

from __future__ import annotations

import base64
import io
from typing import Iterable

import sentencepiece as spm


def train(sentences: Iterable[str], vocab_size: int) -> bytes:
    """A serialized SentencePiece model of at most ``vocab_size`` pieces."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buffer, vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, normalization_rule_name="identity",
        num_threads=1, hard_vocab_limit=False, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        minloglevel=2,
    )
    return buffer.getvalue()


class Subword:
    """``tokenize(sentence) -> pieces`` for one side, from a serialized model."""

    def __init__(self, model: bytes):
        self.model = model
        self._sp = spm.SentencePieceProcessor(model_proto=model)

    def tokenize(self, sentence: str) -> list[str]:
        return self._sp.encode(sentence, out_type=str)

    def to_text(self) -> str:
        """The model as base64 text, to travel inside vocab.json / a model's config."""
        return base64.b64encode(self.model).decode("ascii")

    @classmethod
    def from_text(cls, encoded: str) -> "Subword":
        return cls(base64.b64decode(encoded))
