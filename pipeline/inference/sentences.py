"""Sentences in, translations out, with a model directory: the path ``rnnpipe translate`` takes.

A model directory (:mod:`pipeline.models.store`) records what training fixed: the
vocabularies, the tokenisation (``level``, ``lowercase``, SentencePiece models), the
normaliser the training text went through (``vocab.normalize``), the length
``buckets`` and the decoding limits (``decode``: ``max_len_factor``, ``batch_size``).
:func:`encode_sources` encodes new sentences with exactly those, and
:func:`translate_lines` batches them by the trained buckets and decodes them with
:mod:`pipeline.inference.translator`, as ``evaluate_nmt`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from pipeline.data import subword, tokens
from pipeline.data.tokens import EOS_ID, PAD_ID, Vocab
from pipeline.inference.translator import make_translator, translate_all
from pipeline.models.seq2seq import Seq2Seq
from pipeline.models.store import load_model
from pipeline.sources import tatoeba

# How the training text was normalised before tokenisation, by the name prepare_nmt
# records in vocab.json: Tatoeba's odd Unicode spaces, or nothing (IWSLT is
# pre-tokenised). A model directory without the record predates it: Tatoeba.
NORMALISERS: dict[str, Callable[[str], str]] = {"tatoeba": tatoeba.normalize, "none": lambda s: s}


def source_tokenizer(vocab: dict) -> Callable[[str], list[str]]:
    """How training tokenized the source side: words, characters or SentencePiece pieces."""
    if vocab["level"] == "subword":
        return subword.Subword.from_text(vocab["subword"]["src"]).tokenize
    return lambda sentence: tokens.tokenize(sentence, vocab["level"])


def encode_sources(lines: Sequence[str], vocab: dict) -> dict[str, np.ndarray]:
    """Sentences as the training sources were encoded: normalised, lowercased when
    training was, tokenized, ``</s>`` appended.

    Returns ``src`` <int32>[n, width] (right-padded) and ``src_len`` <int32>[n]; an empty
    line gets length 0.
    """
    normalise = NORMALISERS[vocab.get("normalize", "tatoeba")]
    tokenize, src_vocab = source_tokenizer(vocab), Vocab(tuple(vocab["src"]))
    ids = []
    for line in lines:
        sentence = normalise(line.lower() if vocab.get("lowercase", False) else line)
        ids.append(src_vocab.encode(tokenize(sentence)) + [EOS_ID] if sentence.strip() else [])
    width = max([1, *map(len, ids)])
    src = np.full((len(ids), width), PAD_ID, np.int32)
    for i, row in enumerate(ids):
        src[i, : len(row)] = row
    return {"src": src, "src_len": np.array([len(r) for r in ids], np.int32)}


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How to decode: ``method`` greedy | beam | sample, and its settings."""

    method: str = "beam"
    beam_size: int = 5
    length_penalty: float = 1.0
    temperature: float = 1.0
    max_len_factor: int = 2
    batch_size: int = 64
    seed: int = 0


def translate_lines(model_dir: str | Path, lines: Sequence[str], **overrides: Any) -> list[str]:
    """Translate sentences with a model directory, with its own encoding, buckets and
    decoding limits (``max_len_factor``, ``batch_size``); ``overrides`` are
    :class:`Decoding` fields."""
    params, config = load_model(model_dir)
    vocab, recorded = config["vocab"], config.get("decode", {})
    d = Decoding(**{**recorded, **overrides})
    model = Seq2Seq(**config["model"])
    translate = make_translator(model, d.max_len_factor, d.method, d.beam_size, d.length_penalty, d.temperature)
    arrays = encode_sources(lines, vocab)
    buckets = config.get("buckets", [arrays["src"].shape[1]])  # longer sentences get extra buckets
    return translate_all(translate, params, arrays, buckets, d.batch_size, Vocab(tuple(vocab["trg"])),
                         vocab["level"], jax.random.key(d.seed))
