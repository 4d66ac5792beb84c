"""Character LM: validation loss against wall-clock time, on this machine.

Trains the default configuration of params.yaml (Tiny Shakespeare, 90/10 split,
validation nats/char over the held-out tail) with the pipeline's own training code, and
records the validation loss every ``--eval-every`` steps with the seconds elapsed since
the first step (compilation and evaluations included). Writes a JSON record and a
Markdown summary; the README's table comes from it:

    python benchmarks/charlm_curve.py                 # both cells, ~2.5 min each
    python benchmarks/charlm_curve.py --cells gru --steps 2400

Peers measured on a 2-core CPU of this kind (the issue's figures, nanoGPT's protocol):
nanoGPT's CPU configuration reached 1.886 after 119 s; a PyTorch 2x256 LSTM 1.62 at 120 s.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_facts  # noqa: E402

from pipeline import params as params_module  # noqa: E402
from pipeline.stages import download, prepare_charlm, train_charlm  # noqa: E402
from pipeline.training import loop  # noqa: E402

BUDGET = 120.0  # seconds: the comparison point


def curve(params, cell: str) -> list[dict]:
    job, _ = train_charlm.setup(params, cell)
    evaluate, rows, o = job.evaluate, [], job.options
    started = time.perf_counter()

    def timed(prm):  # fit evaluates every log_every steps and after the last one
        out = evaluate(prm)
        step = min((len(rows) + 1) * o.log_every, o.steps)
        rows.append({"step": step, "seconds": round(time.perf_counter() - started, 1), **out})
        return out

    job.evaluate = timed
    loop.fit(job)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", nargs="+", default=["gru", "lstm"], choices=["gru", "lstm"])
    ap.add_argument("--steps", type=int, default=1800, help="training steps (default: %(default)s)")
    ap.add_argument("--eval-every", type=int, default=100, help="steps between evaluations (default: %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/charlm-curve"))
    args = ap.parse_args()
    doc = yaml.safe_load((ROOT / "params.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["sources"]["charlm"]["url"] = str(ROOT / doc["sources"]["charlm"]["url"])
    doc["charlm"]["train"].update(steps=args.steps, log_every=args.eval_every)
    record = {"machine": machine_facts(),
              "command": "python " + " ".join(sys.argv), "charlm": doc["charlm"], "cells": {}}
    with tempfile.TemporaryDirectory(prefix="rnnpipe-bench-") as scratch:
        old = Path.cwd()
        os.chdir(scratch)
        try:
            params = params_module.from_dict(doc)
            download.run(params, "charlm")
            prepare_charlm.run(params)
            for cell in args.cells:
                record["cells"][cell] = curve(params, cell)
        finally:
            os.chdir(old)
    lines = ["| cell | valid nats/char at ≤120 s (step) | best (seconds) |", "|---|---:|---:|"]
    for cell, rows in record["cells"].items():
        inside = [r for r in rows if r["seconds"] <= BUDGET]
        at = min(inside, key=lambda r: r["valid_loss"]) if inside else None
        best = min(rows, key=lambda r: r["valid_loss"])
        shown = f"{at['valid_loss']:.3f} ({at['step']}, {at['seconds']:.0f} s)" if at else "-"
        lines.append(f"| {cell} | {shown} | {best['valid_loss']:.3f} ({best['seconds']:.0f} s) |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
