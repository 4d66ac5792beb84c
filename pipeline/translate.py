"""``rnnpipe translate``: translate lines with a trained model directory.

    rnnpipe translate models/nmt/gru "I'm hungry." "Where is the station?"
    echo "Thank you." | rnnpipe translate models/nmt/gru --greedy

The model directory is self-describing (weights, architecture, vocabularies, tokenizer
settings), so no params.yaml is needed. Lines are normalised and tokenized as the
training data was, batched by length (a few compiled shapes), decoded with beam search
by default, and printed in input order. Empty lines stay empty; unknown words become
``<unk>`` on the way in, and a ``<unk>`` the model emits is printed as such.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from pipeline import inference, subword, text
from pipeline.checkpoint import load_model
from pipeline.models.seq2seq import Seq2Seq
from pipeline.sources.tatoeba import normalize

WIDTH_STEP = 8  # source widths are rounded up to a multiple of this: few compiled shapes


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rnnpipe translate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a model directory written by train_nmt, e.g. models/nmt/gru")
    ap.add_argument("lines", nargs="*", help="sentences to translate (default: read stdin, one per line)")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--beam", type=int, default=5, metavar="K", help="beam size (default: %(default)s)")
    how.add_argument("--greedy", action="store_true", help="greedy decoding")
    how.add_argument("--sample", action="store_true", help="sample instead of searching")
    ap.add_argument("--length-penalty", type=float, default=1.0, help="GNMT alpha for beam search (default: %(default)s)")
    ap.add_argument("--temperature", type=float, default=1.0, help="with --sample (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="with --sample (default: %(default)s)")
    ap.add_argument("--max-len-factor", type=int, default=2, help="output length cap, x source length (default: %(default)s)")
    ap.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default: %(default)s)")
    return ap


def source_tokenizer(vocab: dict) -> Callable[[str], list[str]]:
    """How training tokenized the source side: words, characters or SentencePiece pieces."""
    if vocab["level"] == "subword":
        return subword.Subword.from_text(vocab["subword"]["src"]).tokenize
    return lambda sentence: text.tokenize(sentence, vocab["level"])


def encode(lines: list[str], vocab: text.Vocab, tokenize: Callable[[str], list[str]],
           lowercase: bool) -> list[list[int]]:
    """Source ids (with ``</s>``) per line; an empty line gives an empty list."""
    out = []
    for line in lines:
        sentence = normalize(line.lower() if lowercase else line)
        out.append(vocab.encode(tokenize(sentence)) + [text.EOS_ID] if sentence else [])
    return out


def batches(sources: list[list[int]], batch_size: int):
    """``(rows, src, src_len)`` for the non-empty sources, grouped by rounded-up width."""
    widths = {i: -(-len(s) // WIDTH_STEP) * WIDTH_STEP for i, s in enumerate(sources) if s}
    for width in sorted(set(widths.values())):
        rows = [i for i, w in widths.items() if w == width]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            padded = chunk + [chunk[0]] * (batch_size - len(chunk))
            src = np.full((batch_size, width), text.PAD_ID, np.int32)
            for r, i in enumerate(padded):
                src[r, : len(sources[i])] = sources[i]
            yield chunk, src, np.array([len(sources[i]) for i in padded], np.int32)


def translate_lines(model_dir: str | Path, lines: list[str], args: argparse.Namespace) -> list[str]:
    params, config = load_model(model_dir)
    model, vocab = Seq2Seq(**config["model"]), config["vocab"]
    src_vocab, trg_vocab = text.Vocab(tuple(vocab["src"])), text.Vocab(tuple(vocab["trg"]))
    method = "greedy" if args.greedy else "sample" if args.sample else "beam"
    translate = inference.make_translator(model, args.max_len_factor, method, args.beam,
                                          args.length_penalty, args.temperature)
    sources = encode(lines, src_vocab, source_tokenizer(vocab), vocab.get("lowercase", False))
    out = [""] * len(lines)
    key = jax.random.key(args.seed)
    for n, (rows, src, src_len) in enumerate(batches(sources, args.batch_size)):
        ids = np.asarray(translate(params, src, src_len, jax.random.fold_in(key, n)))
        for i, row in zip(rows, ids):
            out[i] = text.detokenize(trg_vocab.decode(row.tolist()), vocab["level"])
    return out


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)  # options may come between the sentences
    if args.beam < 1:
        parser().error("--beam must be at least 1")
    lines = args.lines or [line.rstrip("\n") for line in sys.stdin]
    for translation in translate_lines(args.model, lines, args):
        print(translation)
    return 0
