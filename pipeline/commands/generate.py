"""``rnnpipe generate``: sample text from a trained character LM.

    rnnpipe generate models/charlm/gru --prime "ROMEO:" --length 500 --temperature 0.8
    rnnpipe generate models/charlm/lstm --num 3 --top-p 0.9 --seed 7
    rnnpipe generate checkpoints/charlm/train_charlm@gru --step 200

The model directory carries its character vocabulary, so no params.yaml is needed. A
training checkpoint folder works too (char-rnn's `sample.lua` on any saved checkpoint):
the newest run under it and its newest step, or the step given with --step.
The prime is read in one pass, then ``--num`` samples are drawn at once (one batch,
one jitted ``lax.scan``); each is printed after its prime, separated by a blank line.
The same seed gives the same text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

from pipeline.errors import PipelineError
from pipeline.inference import sampler
from pipeline.models.charlm import CharLM
from pipeline.models.store import PARAMS, load_model
from pipeline.training import checkpoints


class PrimeError(PipelineError, ValueError):
    """A prime the model cannot read; the message names the character."""


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rnnpipe generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a model directory written by train_charlm, e.g. models/charlm/gru, or a "
                    "training checkpoint folder, e.g. checkpoints/charlm/train_charlm@gru")
    ap.add_argument("--step", type=int, default=None,
                    help="with a checkpoint folder: the training step to sample from (default: the newest)")
    ap.add_argument("--prime", default="\n", help="text to start from (default: a newline)")
    ap.add_argument("--length", type=int, default=500, help="characters to generate (default: %(default)s)")
    ap.add_argument("--temperature", type=float, default=0.8, help="0 is arg-max (default: %(default)s)")
    ap.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest characters; 0: all (default)")
    ap.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass; 1: off (default)")
    ap.add_argument("--num", type=int, default=1, help="independent samples (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="PRNG seed (default: %(default)s)")
    return ap


def load(path: str, step: int | None = None) -> tuple[object, dict]:
    """``(params, config)`` from a model directory, or from a training checkpoint folder
    (``step``, or its newest)."""
    if (Path(path) / PARAMS).is_file():
        if step is not None:
            raise PrimeError(f"--step: {path} is a finished model, not a checkpoint folder")
        return load_model(path)
    step, params, config = checkpoints.load_params(path, step)
    print(f"{checkpoints.run_folder(path)}: step {step}", file=sys.stderr)
    return params, config


def generate(model_dir: str, prime: str, length: int, temperature: float, top_k: int, top_p: float,
             num: int, seed: int, step: int | None = None) -> list[str]:
    """``num`` samples of ``length`` characters after ``prime``."""
    params, config = load(model_dir, step)
    model, chars = CharLM(**config["model"]), config["chars"]
    if not prime:
        raise PrimeError("--prime: empty; give at least one character")
    try:
        return sampler.texts(model, params, chars, prime, length, temperature, top_k, top_p,
                             jax.random.key(seed), num)
    except KeyError as err:
        raise PrimeError(f"--prime: {err.args[0]}; {model_dir} knows {len(chars)} characters") from None


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    for name, value, low in (("--length", args.length, 1), ("--num", args.num, 1), ("--top-k", args.top_k, 0)):
        if value < low:
            parser().error(f"{name} must be at least {low}")
    if not 0.0 < args.top_p <= 1.0 or args.temperature < 0:
        parser().error("--top-p must be in (0, 1] and --temperature at least 0")
    samples = generate(args.model, args.prime, args.length, args.temperature, args.top_k, args.top_p,
                       args.num, args.seed, args.step)
    print("\n\n".join(samples))
    return 0
