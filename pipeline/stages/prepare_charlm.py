"""prepare_charlm: read the corpus, build the character vocabulary, split head/tail."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import artifacts
from pipeline.data import tokens
from pipeline.params import Params
from pipeline.sources.plaintext import read_corpus, strip_gutenberg


def prepare(corpus: str, valid_fraction: float) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Pure core: ``(chars, train_ids, valid_ids)``; validation is the tail of the text.

    The vocabulary spans the whole corpus (as in char-rnn and nanoGPT), so validation
    never meets an unknown character.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    chars = tokens.char_vocab(corpus)
    ids = tokens.encode_chars(corpus, chars)
    cut = int(len(ids) * (1.0 - valid_fraction))
    return chars, ids[:cut], ids[cut:]


def run(params: Params, variant: str | None = None) -> None:
    source = params.sources.charlm
    raw = Path(source.raw)
    corpus = read_corpus(raw.read_bytes(), str(raw))
    if source.format == "gutenberg":
        corpus = strip_gutenberg(corpus, str(raw))
    chars, train_ids, valid_ids = prepare(corpus, params.charlm.data.valid_fraction)
    out = Path(params.charlm.paths.prepared)
    artifacts.write_npz(out / "train.npz", ids=train_ids)
    artifacts.write_npz(out / "valid.npz", ids=valid_ids)
    artifacts.write_json(out / "vocab.json", {"chars": "".join(chars)})
    print(f"prepare_charlm: {len(corpus)} chars, vocab {len(chars)}; "
          f"train {len(train_ids)} / valid {len(valid_ids)} -> {out}")
