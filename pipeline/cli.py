"""Command line: run one pipeline stage with the values in params.yaml.

Dispatch only: parse the stage name, load params, call ``pipeline.stages.<stage>.run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pipeline import params as params_module

STAGES = {
    "download": "fetch a workload's source into data/raw (variant: nmt | charlm | forecast)",
    "prepare_nmt": "parse, tokenize and split the sentence pairs; build vocabularies",
    "train_nmt": "train the seq2seq translator (variant: the cell, lstm | gru)",
    "evaluate_nmt": "translate the held-out test pairs; BLEU and chrF with sacrebleu",
    "prepare_charlm": "build the character vocabulary; split train/valid",
    "train_charlm": "train the character LM with truncated BPTT (variant: the cell)",
    "evaluate_charlm": "validation nats/char and bits/char; write a generated sample",
    "prepare_forecast": "parse the price history; cut leak-free train/test windows",
    "train_forecast": "train the seq2seq price forecaster (variant: the cell)",
    "evaluate_forecast": "errors by horizon against the naive baseline; forecast plot",
}
NEEDS_VARIANT = {s for s in STAGES if s.startswith(("download", "train_", "evaluate_"))}


def parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<18} {text}" for name, text in STAGES.items())
    ap = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Run one stage of the rnnpipe pipeline. Every value comes from "
        "params.yaml; there are no hyperparameter flags. Normally `dvc repro` calls this.",
        epilog=f"stages:\n{listing}\n\nexamples:\n  python -m pipeline download nmt\n"
        "  python -m pipeline train_charlm gru\n  dvc repro train_nmt@lstm",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("stage", choices=sorted(STAGES), metavar="stage", help="the stage to run")
    ap.add_argument("variant", nargs="?", help="workload (download) or cell (train/evaluate)")
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.stage in NEEDS_VARIANT and not args.variant:
        parser().error(f"stage '{args.stage}' needs a variant: {STAGES[args.stage]}")
    try:
        params = params_module.load(args.params)
    except params_module.ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.stage.startswith(("train_", "evaluate_")):
        workload = args.stage.split("_", 1)[1]
        cells = getattr(params, workload).model.cells
        if args.variant not in cells:
            print(f"error: cell '{args.variant}' is not in {workload}.model.cells {list(cells)}",
                  file=sys.stderr)
            return 2
    stage = importlib.import_module(f"pipeline.stages.{args.stage}")
    stage.run(params, args.variant)
    return 0
