"""Command line: run one pipeline stage with the values in params.yaml.

Dispatch only: parse the stage name, load params, call ``pipeline.stages.<stage>.run``.
The commands that are not stages live in :mod:`pipeline.commands`: ``profile`` applies
``profiles/<name>.yaml`` to params.yaml; ``translate``, ``generate`` and ``forecast``
run a trained model (a translator, a character LM, a price forecaster) from its model
directory; ``report`` reviews two revisions. An actionable error
(:class:`pipeline.errors.PipelineError`) prints its message alone and exits 1; a
params.yaml problem exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pipeline import jax_cache
from pipeline import params as params_module
from pipeline.errors import PipelineError

STAGES = {
    "download": "fetch a workload's source into data/raw (variant: nmt | charlm | forecast)",
    "prepare_nmt": "parse, tokenize and split the sentence pairs; build vocabularies",
    "train_nmt": "train the seq2seq translator; keep the best dev BLEU (variant: the cell, lstm | gru)",
    "evaluate_nmt": "translate the dev and test pairs (nmt.decode.method); BLEU and chrF with sacrebleu",
    "prepare_charlm": "build the character vocabulary; split train/valid",
    "train_charlm": "train the character LM with truncated BPTT (variant: the cell)",
    "evaluate_charlm": "validation nats/char and bits/char; write a generated sample",
    "prepare_forecast": "parse the price history; cut leak-free train/test windows",
    "baseline_forecast": "naive, drift, AutoARIMA, AutoETS (AutoTheta) forecasts and intervals for every test window",
    "backtest_forecast": "rolling-origin backtest: the network refitted per fold and the baselines, per horizon",
    "train_forecast": "train the seq2seq price forecaster (variant: the cell)",
    "evaluate_forecast": "errors by horizon beside the baselines; forecast plot",
}
NEEDS_VARIANT = {s for s in STAGES if s.startswith(("download", "train_", "evaluate_"))}
# Commands that are not stages: each is a module of pipeline.commands with
# ``main(argv)``, imported only when called so stage start-up stays lean.
COMMANDS = {
    "profile": ("NAME...", "apply profiles/NAME.yaml to params.yaml"),
    "translate": ("MODEL", "translate lines with a trained model directory"),
    "generate": ("MODEL", "sample text from a trained character LM"),
    "forecast": ("MODEL", "the next horizon of prices from the latest stored data"),
    "report": ("[OLD] [NEW]", "metrics, params and training curves of two revisions (Markdown, HTML)"),
}


def parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<18} {text}" for name, text in STAGES.items())
    commands = "\n".join(f"  {f'{name} {arg}':<18} {text}" for name, (arg, text) in COMMANDS.items())
    ap = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Run one stage of the rnnpipe pipeline. Every value comes from "
        "params.yaml; there are no hyperparameter flags. Normally `dvc repro` calls this.",
        epilog=f"stages:\n{listing}\n\nother commands (each has --help):\n{commands}\n\n"
        "examples:\n  python -m pipeline download nmt\n"
        "  python -m pipeline train_charlm gru\n  dvc repro train_nmt@lstm",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("stage", choices=sorted(STAGES), metavar="stage", help="the stage to run")
    ap.add_argument("variant", nargs="?", help="workload (download) or cell (train/evaluate)")
    ap.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in COMMANDS:
            command = importlib.import_module(f"pipeline.commands.{argv[0]}")
            _cache_compilations()
            return command.main(argv[1:])
        return run_stage(argv)
    except params_module.ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 1)  # 143/130 after SIGTERM/SIGINT stopped training


def run_stage(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.stage in NEEDS_VARIANT and not args.variant:
        parser().error(f"stage '{args.stage}' needs a variant: {STAGES[args.stage]}")
    params = params_module.load(args.params)
    if args.stage.startswith(("train_", "evaluate_")):
        workload = args.stage.split("_", 1)[1]
        cells = getattr(params, workload).model.cells
        if args.variant not in cells:
            print(f"error: cell '{args.variant}' is not in {workload}.model.cells {list(cells)}",
                  file=sys.stderr)
            return 2
    if args.stage.startswith("train_") and ({"RNNPIPE_COORDINATOR", "RNNPIPE_DISTRIBUTED"} & set(os.environ)):
        from pipeline.training import parallel  # several hosts: join before jax sees any device

        parallel.initialize_distributed()
    stage = importlib.import_module(f"pipeline.stages.{args.stage}")
    computes = _cache_compilations()
    if args.stage.startswith(("train_", "evaluate_")):  # a forced kernel that cannot run: one line, no traceback
        from pipeline.models.rnn import forced_kernel_problem

        kernel = getattr(params, workload).model.kernel
        if problem := forced_kernel_problem(kernel):
            print(f"error: {args.params}: '{workload}.model.kernel' is {kernel!r}, but {problem}; "
                  "set it to auto (oneDNN or the scan, whichever runs here) or scan", file=sys.stderr)
            return 2
    stage.run(params, args.variant)
    if computes:  # what this stage compiled and what the cache spared it (benchmarks/repro_time.py reads it)
        print(jax_cache.summary(), file=sys.stderr)
    return 0


def _cache_compilations() -> bool:
    """Switch JAX's persistent compilation cache on (pipeline/jax_cache.py) for a stage or
    command whose module imported JAX, before it compiles anything; the others (downloads,
    preparation, report) never load JAX for it (about 1 s each)."""
    if "jax" in sys.modules:
        jax_cache.enable()
        return True
    return False
