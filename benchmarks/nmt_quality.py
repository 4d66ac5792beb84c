"""Translation quality by model family on the Tatoeba eng->fra held-out set.

Trains and evaluates each configuration with the pipeline's own stages, in a scratch
directory, on the values in params.yaml plus the overrides listed below, and writes a
JSON record and a Markdown table (the README's quality table comes from it):

    python benchmarks/nmt_quality.py                      # every configuration, ~40 min on 2 cores
    python benchmarks/nmt_quality.py --only general-lstm --update  # redo one row

Timings are wall-clock seconds of the train stage on this machine; run nothing else
meanwhile. The character-level rows filter pairs by characters, not words, so their
held-out set is a different (shorter-sentence) sample of the same corpus.
"""

from __future__ import annotations

import argparse
import contextlib
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
from pipeline.stages import download, evaluate_nmt, prepare_nmt, train_nmt  # noqa: E402

# Keras lstm_seq2seq: characters, tab starts and newline ends a target (our <s>, </s>),
# one unidirectional 256-unit layer, no attention.
KERAS_CHAR = {"data": {"level": "char", "max_len": 40, "min_freq": 1, "buckets": [21, 41]},
              "model": {"bidirectional": False, "attention": "none", "embed": 64}}
FAMILIES = {
    "none": {"model": {"attention": "none"}},
    "general": {"model": {"attention": "general"}},
    "bahdanau": {"model": {"attention": "bahdanau"}},
    "general+feed": {"model": {"attention": "general", "input_feeding": True}},
    "keras-char": KERAS_CHAR,
}
CONFIGS = {f"{family}-{cell}": (overrides, cell) for family, overrides in FAMILIES.items() for cell in ("lstm", "gru")}


def merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) else value
    return out


@contextlib.contextmanager
def inside(folder: Path):
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def run_config(name: str, base: dict, work: Path) -> dict:
    overrides, cell = CONFIGS[name]
    doc = merge(base, {"nmt": overrides})
    doc["nmt"]["model"]["cells"] = [cell]
    source = doc["sources"]["nmt"]
    source["url"] = str(ROOT / source["url"])
    doc["nmt"]["paths"] = {k: f"{name}/{k}" for k in doc["nmt"]["paths"]}
    params = params_module.from_dict(doc, source=f"params.yaml + {name}")
    with inside(work):
        download.run(params, "nmt")
        prepare_nmt.run(params)
        started = time.perf_counter()
        train_nmt.run(params, cell)
        seconds = time.perf_counter() - started
        evaluate_nmt.run(params, cell)
        metrics = json.loads(Path(params.nmt.paths.metrics, f"nmt-{cell}.json").read_text())
        curve = Path(params.nmt.paths.live, f"nmt-{cell}/plots/metrics/valid/bleu.tsv").read_text().splitlines()
    return {"config": name, "cell": cell, "overrides": overrides, "train_seconds": round(seconds, 1),
            "steps": params.nmt.train.steps, "evaluations": len(curve) - 1, **metrics}


def table(rows: list[dict]) -> str:
    lines = ["| configuration | cell | test BLEU (beam) | greedy | chrF | dev BLEU | train s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config'].rsplit('-', 1)[0]} | {r['cell']} | {r['bleu']:.2f} | {r['bleu_greedy']:.2f} "
                     f"| {r['chrf']:.2f} | {r['valid_bleu']:.2f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="run these configurations only")
    ap.add_argument("--update", action="store_true",
                    help="replace only the rows run now in an existing record (keeps the others)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/nmt-quality"),
                    help="output path without extension (default: %(default)s)")
    args = ap.parse_args()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnnpipe-bench-") as scratch:
        for name in args.only or CONFIGS:
            print(f"== {name}", flush=True)
            rows.append(run_config(name, base, Path(scratch)))
    out = Path(args.out)
    if args.update and out.with_suffix(".json").is_file():
        fresh = {r["config"]: r for r in rows}
        kept = {r["config"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
        kept.update(fresh)
        rows = [kept[name] for name in CONFIGS if name in kept]
    record = {"machine": machine_facts(),
              "command": "python benchmarks/nmt_quality.py", "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
