"""Pure text preparation: tokenizers, vocabularies, encoding and held-out splits.

Word tokens carry a leading ``▁`` when a space preceded them in the text (the
sentencepiece convention), so ``detokenize(tokenize(s)) == s`` for any normalised
sentence and hypotheses can be scored by sacrebleu against untouched references.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
SPACE = "\u2581"  # ▁

_WORD = re.compile(r"\s*(\w+|[^\w\s])", re.UNICODE)


def tokenize(text: str, level: Literal["word", "char", "space"]) -> list[str]:
    """Split a normalised sentence into tokens that :func:`detokenize` can undo.

    ``space`` takes a pre-tokenized corpus's whitespace-separated tokens as they stand
    (IWSLT; tensorflow/nmt reads it this way), so its own vocabulary files apply.
    """
    if level == "char":
        return list(text)
    if level == "space":
        return text.split()
    return [(SPACE if m.group(0)[0].isspace() else "") + m.group(1) for m in _WORD.finditer(text)]


def detokenize(tokens: Iterable[str], level: Literal["word", "char", "space"]) -> str:
    """Inverse of :func:`tokenize`; an ``<unk>`` stands apart as a word of its own."""
    if level == "char":
        return "".join(tokens)
    if level == "space":
        return " ".join(tokens)
    marked = (SPACE + t if t == UNK else t for t in tokens)
    return "".join(marked).replace(SPACE, " ").strip()


@dataclass(frozen=True)
class Vocab:
    """Token <-> id mapping; ids 0..3 are ``<pad> <unk> <s> </s>``."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        index = self._index  # type: ignore[attr-defined]
        return [index.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids up to the first ``</s>``, without specials except ``<unk>``."""
        out = []
        for i in ids:
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            out.append(self.tokens[i])
        return out


def build_vocab(sentences: Iterable[Sequence[str]], min_freq: int) -> Vocab:
    """Vocabulary of tokens seen at least ``min_freq`` times, most frequent first."""
    counts = Counter(t for s in sentences for t in s)
    kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    return Vocab(SPECIALS + tuple(kept))


def split_by_source(
    pairs: Sequence[tuple[str, str]], valid_size: int, test_size: int, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """Split pairs so that no source sentence of valid/test appears in training.

    Tatoeba repeats an English sentence with several translations; splitting by pair
    would leak the source side. Whole source groups go to one split.
    ``valid_size`` and ``test_size`` count distinct source sentences.
    """
    groups: dict[str, list[tuple[str, str]]] = {}
    for pair in pairs:
        groups.setdefault(pair[0], []).append(pair)
    sources = sorted(groups)
    if valid_size + test_size >= len(sources):
        raise ValueError(
            f"valid_size + test_size = {valid_size + test_size} leaves no training data "
            f"({len(sources)} distinct source sentences)"
        )
    order = np.random.default_rng(seed).permutation(len(sources))
    chosen = [sources[i] for i in order]
    test = chosen[:test_size]
    valid = chosen[test_size : test_size + valid_size]
    train = chosen[test_size + valid_size :]
    take = lambda keys: [p for k in keys for p in groups[k]]  # noqa: E731
    return take(train), take(valid), take(test)


def encode_pairs(
    pairs: Sequence[tuple[Sequence[str], Sequence[str]]],
    src_vocab: Vocab,
    trg_vocab: Vocab,
    width: int,
) -> dict[str, np.ndarray]:
    """Encode token pairs as right-padded id arrays.

    Returns:
        ``src`` <int32>[n, width]: source ids then ``</s>``;
        ``trg`` <int32>[n, width + 1]: ``<s>``, target ids, ``</s>`` (the decoder reads
        ``trg[:, :-1]`` and predicts ``trg[:, 1:]``);
        ``src_len``, ``trg_len`` <int32>[n]: lengths including ``</s>``.
    """
    n = len(pairs)
    src = np.full((n, width), PAD_ID, np.int32)
    trg = np.full((n, width + 1), PAD_ID, np.int32)
    src_len = np.zeros(n, np.int32)
    trg_len = np.zeros(n, np.int32)
    for i, (s, t) in enumerate(pairs):
        s_ids = src_vocab.encode(s) + [EOS_ID]
        t_ids = [BOS_ID] + trg_vocab.encode(t) + [EOS_ID]
        if len(s_ids) > width or len(t_ids) > width + 1:
            raise ValueError(f"pair {i} is longer than the padded width {width}")
        src[i, : len(s_ids)] = s_ids
        trg[i, : len(t_ids)] = t_ids
        src_len[i], trg_len[i] = len(s_ids), len(t_ids) - 1
    return {"src": src, "trg": trg, "src_len": src_len, "trg_len": trg_len}


def char_vocab(text: str) -> tuple[str, ...]:
    """The sorted distinct characters of a corpus (char LM ids index this)."""
    return tuple(sorted(set(text)))


def encode_chars(text: str, chars: Sequence[str]) -> np.ndarray:
    """<int32>[len(text)] ids; raises KeyError naming an unknown character."""
    index = {c: i for i, c in enumerate(chars)}
    try:
        return np.fromiter((index[c] for c in text), np.int32, count=len(text))
    except KeyError as err:
        raise KeyError(f"character {err.args[0]!r} is not in the vocabulary") from None
