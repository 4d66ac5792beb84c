"""``rnnpipe translate``: translate lines with a trained model directory.

    rnnpipe translate models/nmt/gru "I'm hungry." "Where is the station?"
    echo "Thank you." | rnnpipe translate models/nmt/gru --greedy

The model directory is self-describing (weights, architecture, vocabularies, tokenizer
settings, the normaliser its training text went through, its length buckets and
decoding limits), so no params.yaml is needed. Lines are encoded exactly as the
training sources were and batched by the trained buckets
(:mod:`pipeline.inference.sentences`, then the decoder evaluate_nmt uses), decoded with
beam search by default, and printed in input order. Empty lines stay empty; unknown
words become ``<unk>`` on the way in, and a ``<unk>`` the model emits is printed as such.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.inference import sentences

DEFAULTS = sentences.Decoding()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rnnpipe translate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a model directory written by train_nmt, e.g. models/nmt/gru")
    ap.add_argument("lines", nargs="*", help="sentences to translate (default: read stdin, one per line)")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--beam", type=int, default=DEFAULTS.beam_size, metavar="K",
                     help="beam size (default: %(default)s)")
    how.add_argument("--greedy", action="store_true", help="greedy decoding")
    how.add_argument("--sample", action="store_true", help="sample instead of searching")
    ap.add_argument("--length-penalty", type=float, default=DEFAULTS.length_penalty,
                    help="GNMT alpha for beam search (default: %(default)s)")
    ap.add_argument("--temperature", type=float, default=DEFAULTS.temperature,
                    help="with --sample (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=DEFAULTS.seed, help="with --sample (default: %(default)s)")
    ap.add_argument("--max-len-factor", type=int,
                    help="output length cap, x source length (default: the model's, from nmt.decode)")
    ap.add_argument("--batch-size", type=int, help="sentences per batch (default: the model's, from nmt.decode)")
    return ap


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)  # options may come between the sentences
    if args.beam < 1:
        parser().error("--beam must be at least 1")
    lines = args.lines or [line.rstrip("\n") for line in sys.stdin]
    method = "greedy" if args.greedy else "sample" if args.sample else "beam"
    overrides = {"method": method, "beam_size": args.beam, "length_penalty": args.length_penalty,
                 "temperature": args.temperature, "seed": args.seed}
    overrides.update({k: v for k, v in (("max_len_factor", args.max_len_factor), ("batch_size", args.batch_size))
                      if v is not None})
    for translation in sentences.translate_lines(args.model, lines, **overrides):
        print(translation)
    return 0
