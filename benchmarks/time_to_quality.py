"""Time to quality: held-out quality against wall-clock seconds, rnnpipe beside its peers.

Every cell runs in a process of its own, one after another on this machine (nothing else
should run meanwhile), on the same prepared data, and records its held-out score at each
evaluation with the seconds since the process started (imports, compilation and the
evaluations themselves included: what a user waits for).

    # NMT (dev BLEU, detokenized sacrebleu, greedy): rnnpipe's cells against JoeyNMT 2.3.0
    # with the same architecture, split, tokens and vocabulary (JoeyNMT goes in a virtual
    # environment of its own, built from PyPI on first use: benchmarks/joeynmt_cell.py)
    python benchmarks/time_to_quality.py nmt --joeynmt

    # Char LM (validation nats/char): rnnpipe against a plain PyTorch 2-layer LSTM
    # (benchmarks/torch_charlm.py; needs `pip install -e ".[bench]"`)
    python benchmarks/time_to_quality.py charlm --torch

    # One lever at a time: named variants of params.yaml, each a row (tune on dev only)
    python benchmarks/time_to_quality.py levers nmt --cells lstm \\
        --variant base --variant warmup nmt.train.schedule=warmup_linear nmt.train.warmup_steps=100

``--set KEY=VALUE`` (any command) changes params.yaml's values for every rnnpipe cell:
values are YAML (``--set nmt.train.steps=1500``). Results go to
``benchmarks/results/time-to-quality-<workload>.{json,md}`` and
``benchmarks/results/levers-<workload>-<name>.{json,md}``, with the machine that made them.
Benchmarks are not tests: nothing here fails on timing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_facts  # noqa: E402

from pipeline import runtime  # noqa: E402

RESULTS = ROOT / "benchmarks/results"
SCORE = {"nmt": ("valid_bleu", "dev BLEU", max), "charlm": ("valid_loss", "valid nats/char", min)}


# -- params --------------------------------------------------------------------------------


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", ...]`` -> ``{"a.b": 1}``; values are YAML."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {item!r} is not KEY=VALUE (e.g. nmt.train.steps=1500)")
        out[key] = yaml.safe_load(value)
    return out


def apply_sets(doc: dict, sets: dict[str, Any]) -> dict:
    doc = copy.deepcopy(doc)
    for key, value in sets.items():
        node, parts = doc, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise SystemExit(f"error: params.yaml has no section {key.rsplit('.', 1)[0]!r} (from {key}=...)")
            node = node[part]
        if parts[-1] not in node:
            raise SystemExit(f"error: params.yaml has no key {key!r}")
        node[parts[-1]] = value
    return doc


def scratch_params(doc: dict, workload: str, cell: str) -> dict:
    """``doc`` for one ``cell`` of ``workload`` in a scratch directory: the source is read
    from this checkout, every path is relative to the scratch directory."""
    doc = copy.deepcopy(doc)
    source = doc["sources"][workload]
    source["url"] = str(ROOT / source["url"])
    doc[workload]["model"]["cells"] = [cell]
    return doc


# -- one rnnpipe cell, in its own process ------------------------------------------------------


def cell_main(args: argparse.Namespace) -> int:
    """The ``_cell`` command: train one rnnpipe cell in the current directory and write its
    curve. Started by :func:`run_rnnpipe` right after the interpreter: ``started`` counts
    from the parent's spawn time, so imports and compilation are in the first row."""
    started = float(args.started)
    from pipeline import params as params_module
    from pipeline.stages import download
    from pipeline.training import loop

    doc = yaml.safe_load(Path(args.params).read_text())
    params = params_module.from_dict(doc, source=args.params)
    preparing = time.time()
    download.run(params, args.workload)
    if args.workload == "nmt":
        from pipeline.stages import prepare_nmt as prepare
        from pipeline.stages import train_nmt as train
    else:
        from pipeline.stages import prepare_charlm as prepare
        from pipeline.stages import train_charlm as train
    prepare.run(params)
    preparation = time.time() - preparing  # preparing the data is not training: taken out of the clock
    job, _ = train.setup(params, args.cell)
    evaluate, rows, o = job.evaluate, [], job.options

    def timed(prm):
        out = evaluate(prm)
        step = min((len(rows) + 1) * o.log_every, o.steps)
        rows.append({"step": step, "seconds": round(time.time() - started - preparation, 1),
                     **{k: round(v, 4) for k, v in out.items()}})
        print(json.dumps(rows[-1]), flush=True)
        return out

    job.evaluate = timed
    loop.fit(job)
    Path(args.out).write_text(json.dumps(rows) + "\n")
    return 0


def run_rnnpipe(workload: str, cell: str, doc: dict, work: Path) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    params_file, out = work / "params.yaml", work / "curve.json"
    params_file.write_text(yaml.safe_dump(scratch_params(doc, workload, cell), sort_keys=False))
    env = runtime.environment({**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"})
    started = time.time()
    subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "_cell",
            workload,
            cell,
            "--params",
            str(params_file),
            "--out",
            str(out),
            "--started",
            repr(started),
        ],
        cwd=work,
        env=env,
        check=True,
    )
    return json.loads(out.read_text())


# -- the peers -------------------------------------------------------------------------------


def prepared_dir(workload: str, doc: dict, work: Path) -> Path:
    """Prepare ``workload``'s data once in ``work`` with rnnpipe's own stages (in a process
    of its own) and return the prepared folder the peers read."""
    cell = doc[workload]["model"]["cells"][0]
    work.mkdir(parents=True, exist_ok=True)
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(scratch_params(doc, workload, cell), sort_keys=False))
    code = (
        "import sys, yaml; from pipeline import params as P; "
        f"from pipeline.stages import download, prepare_{workload} as s;"
        f"p = P.from_dict(yaml.safe_load(open(sys.argv[1]))); download.run(p, '{workload}'); s.run(p)"
    )
    subprocess.run([sys.executable, "-c", code, str(params_file)], cwd=work, check=True,
                   env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)})
    return work / doc[workload]["paths"]["prepared"]


def run_joeynmt(doc: dict, cell: str, work: Path, steps: int, prepared: Path, learning_rate: float) -> list[dict]:
    """JoeyNMT's RNN with params.yaml's architecture, batch and decoding, at a constant
    ``learning_rate`` (JoeyNMT's reference recipes' schedule), on ``prepared``. Its output
    layer is not tied: JoeyNMT's recurrent decoder ties only an embedding as wide as its
    hidden state, and rnnpipe ties through a projection (hidden -> embed)."""
    import joeynmt_cell

    nmt = copy.deepcopy(doc["nmt"])
    nmt["train"].update(schedule="constant", warmup_steps=0, learning_rate=learning_rate)
    nmt["model"]["tie_embeddings"] = False
    python = joeynmt_cell.ensure_venv()
    data = joeynmt_cell.write_data(prepared, work / "data")
    config = joeynmt_cell.write_config(data, work, cell, steps, **joeynmt_cell.settings_from_params(nmt))
    return joeynmt_cell.run(python, config, work, timeout=6 * 3600)


def run_torch_charlm(doc: dict, work: Path, prepared: Path) -> list[dict]:
    t, m = doc["charlm"]["train"], doc["charlm"]["model"]
    work.mkdir(parents=True, exist_ok=True)
    out = work / "torch-curve.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/torch_charlm.py"), "--prepared", str(prepared),
           "--steps", str(t["steps"]), "--eval-every", str(t["log_every"]), "--lr", str(t["learning_rate"]),
           "--schedule", t["schedule"], "--warmup-steps", str(t["warmup_steps"]), "--batch", str(t["batch_size"]),
           "--seq-len", str(t["seq_len"]), "--embed", str(m["embed"]), "--hidden", str(m["hidden"]),
           "--layers", str(m["layers"]), "--dropout", str(m["dropout"]), "--clip", str(t["clip_norm"]),
           "--seed", str(t["seed"]), "--threads", str(os.cpu_count() or 1), "--out", str(out),
           "--clock-start", repr(time.time())]
    subprocess.run(cmd, check=True, env=runtime.environment())
    return json.loads(out.read_text())["rows"]


# -- reading curves --------------------------------------------------------------------------


def first_reaching(rows: list[dict], key: str, target: float, better) -> dict | None:
    """The first row whose ``key`` is at least as good as ``target``."""
    for row in rows:
        if better(row[key], target) == row[key]:
            return row
    return None


def best_within(rows: list[dict], key: str, seconds: float, better) -> dict | None:
    inside = [r for r in rows if r["seconds"] <= seconds]
    return better(inside, key=lambda r: r[key]) if inside else None


def curve_table(workload: str, curves: dict[str, list[dict]], budget: float) -> list[str]:
    key, label, better = SCORE[workload]
    lines = [f"| cell | best {label} within {budget:.0f} s (step, s) | best {label} (step, s) | evaluations |",
             "|---|---:|---:|---:|"]
    for name, rows in curves.items():
        at, best = best_within(rows, key, budget, better), better(rows, key=lambda r: r[key])
        shown = f"{at[key]:.3f} ({at['step']}, {at['seconds']:.0f} s)" if at else "-"
        lines.append(f"| {name} | {shown} | {best[key]:.3f} ({best['step']}, {best['seconds']:.0f} s) | {len(rows)} |")
    return lines


def catch_up_table(workload: str, curves: dict[str, list[dict]], peer: str, budget: float | None) -> list[str]:
    """How long each rnnpipe cell takes to reach the peer's best score within ``budget``
    seconds (None: the peer's best of its whole run). When rnnpipe's first evaluation
    already reaches it, the ratio is only an upper bound (marked ≤): the peer's best is
    below anything rnnpipe recorded, so the table times first evaluations, not learning."""
    key, label, better = SCORE[workload]
    within = f"within {budget:.0f} s" if budget is not None else "in its whole run"
    lines = [f"| cell | {peer}'s best {label} {within} | {peer} reached it at | "
             "rnnpipe reached it at | rnnpipe / peer time |", "|---|---:|---:|---:|---:|"]
    for name, rows in curves.items():
        if not name.startswith("rnnpipe"):
            continue
        cell = name.split(" ", 1)[1]
        # the peer's same cell, else its only one (PyTorch's char LM is an LSTM)
        peer_rows = curves.get(f"{peer} {cell}") or next((v for k, v in curves.items() if k.startswith(peer)), None)
        if not peer_rows:
            continue
        target = best_within(peer_rows, key, float("inf") if budget is None else budget, better)
        if target is None:
            continue
        mine = first_reaching(rows, key, target[key], better)
        ratio = f"{mine['seconds'] / target['seconds']:.2f}" if mine else "not reached"
        if mine is rows[0]:
            ratio = f"≤ {ratio} (rnnpipe's first evaluation)"
        reached = f"{mine['seconds']:.0f} s" if mine else "-"
        lines.append(f"| {name} | {target[key]:.3f} | {target['seconds']:.0f} s | {reached} | {ratio} |")
    return lines


def write(name: str, record: dict, lines: list[str]) -> None:
    out = RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": "python " + " ".join(sys.argv[1:] and [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": machine_facts(), **record}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(out, record, lines)


def write_markdown(out: Path, record: dict, lines: list[str]) -> None:
    header = [f"Machine: {record['machine']['cpu']}, {record['machine']['cores']} cores. "
              f"Command: `{record['command']}`.", ""]
    if record.get("note"):
        header += [f"Note: {record['note']}.", ""]
    out.with_suffix(".md").write_text("\n".join(header + lines) + "\n")
    print("\n".join(lines))


# -- commands --------------------------------------------------------------------------------


def compare(args: argparse.Namespace, doc: dict) -> int:
    workload = args.workload
    curves: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="rnnpipe-ttq-") as scratch:
        scratch = Path(scratch)
        for cell in args.cells:
            print(f"== rnnpipe {cell}", flush=True)
            curves[f"rnnpipe {cell}"] = run_rnnpipe(workload, cell, doc, scratch / f"rnnpipe-{cell}")
        if workload == "nmt" and args.joeynmt:
            prepared = prepared_dir("nmt", doc, scratch / "peer-data")
            for cell in args.cells:
                print(f"== joeynmt {cell}", flush=True)
                curves[f"joeynmt {cell}"] = run_joeynmt(doc, cell, scratch / f"joeynmt-{cell}", args.peer_steps,
                                                        prepared, args.peer_lr)
        if workload == "charlm" and args.torch:
            prepared = prepared_dir("charlm", doc, scratch / "peer-data")
            print("== torch lstm", flush=True)
            curves["torch lstm"] = run_torch_charlm(doc, scratch / "torch", prepared)
    write(f"time-to-quality-{workload}", {"workload": workload, "budget_seconds": args.budget, "sets": args.sets,
                                          "params": doc[workload], "curves": curves},
          tables(workload, curves, args.budget))
    return 0


def tables(workload: str, curves: dict[str, list[dict]], budget: float) -> list[str]:
    """The Markdown tables of one comparison's curves."""
    lines = curve_table(workload, curves, budget)
    peer = "joeynmt" if workload == "nmt" else "torch"
    if any(name.startswith(peer) for name in curves):
        lines += ["", *catch_up_table(workload, curves, peer, budget), "",
                  *catch_up_table(workload, curves, peer, None)]
    if workload == "charlm" and "torch lstm" in curves:
        lines += ["", *every_evaluation_table(workload, curves, "torch lstm", after=30.0)]
    return lines


def every_evaluation_table(workload: str, curves: dict[str, list[dict]], peer: str, after: float) -> list[str]:
    """Each rnnpipe evaluation later than ``after`` seconds against the peer's best score
    recorded by the same second: how many of them are better."""
    key, label, better = SCORE[workload]
    peer_rows = curves[peer]
    lines = [f"| cell | evaluations after {after:.0f} s | better than {peer}'s best by then | "
             "the closest (rnnpipe, peer, s) |", "|---|---:|---:|---|"]
    for name, rows in curves.items():
        if not name.startswith("rnnpipe"):
            continue
        pairs = []
        for row in rows:
            earlier = best_within(peer_rows, key, row["seconds"], better)
            if row["seconds"] > after and earlier is not None:
                pairs.append((row, earlier))
        wins = [r for r, e in pairs if better(r[key], e[key]) == r[key] and r[key] != e[key]]
        if not pairs:
            lines.append(f"| {name} | 0 | - | - |")
            continue
        r, e = min(pairs, key=lambda pe: abs(pe[0][key] - pe[1][key]))
        lines.append(f"| {name} | {len(pairs)} | {len(wins)} | {r[key]:.3f}, {e[key]:.3f}, {r['seconds']:.0f} s |")
    return lines


def render(args: argparse.Namespace) -> int:
    """Rewrite a results file's Markdown tables from its JSON (after a change to the tables)."""
    path = Path(args.json)
    record = json.loads(path.read_text())
    write_markdown(path, record, tables(record["workload"], record["curves"], record["budget_seconds"]))
    return 0


def levers(args: argparse.Namespace, doc: dict) -> int:
    """Each ``--variant NAME KEY=VALUE ...`` (applied over ``doc``) trained per cell; one
    row each, with the score at the end and within ``--budget`` seconds."""
    key, label, better = SCORE[args.workload]
    runs = [(variant[0], parse_sets(variant[1:]), cell) for variant in args.variant for cell in args.cells]
    with tempfile.TemporaryDirectory(prefix="rnnpipe-levers-") as scratch:
        def one(run):
            name, sets, cell = run
            print(f"== {name} {cell} {sets}", flush=True)
            try:
                return run_rnnpipe(args.workload, cell, apply_sets(doc, sets), Path(scratch) / f"{name}-{cell}")
            except subprocess.CalledProcessError as err:  # one failed variant does not lose the others
                print(f"== {name} {cell} failed: {err}", flush=True)
                return None

        with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
            curves = list(pool.map(one, runs))
    rows = []
    for (name, sets, cell), curve in zip(runs, curves, strict=True):
        if not curve:
            continue
        final, at = curve[-1], best_within(curve, key, args.budget, better)
        rows.append({"variant": name, "cell": cell, "sets": sets, "curve": curve, "final": final[key],
                     "seconds": final["seconds"], "steps": final["step"], "within_budget": at[key] if at else None})
    lines = [f"| variant | cell | settings | steps | seconds | {label} at the end | best {label} within "
             f"{args.budget:.0f} s |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        sets = ", ".join(f"`{k}={v}`" for k, v in r["sets"].items()) or "params.yaml"
        within = f"{r['within_budget']:.3f}" if r["within_budget"] is not None else "-"
        lines.append(f"| {r['variant']} | {r['cell']} | {sets} | {r['steps']} | {r['seconds']:.0f} | "
                     f"{r['final']:.3f} | {within} |")
    if args.parallel > 1:
        lines += ["", f"{args.parallel} runs at a time on {os.cpu_count()} cores: compare the scores, not the seconds."]
    write(f"levers-{args.workload}-{args.name}", {"workload": args.workload, "budget_seconds": args.budget,
                                                  "parallel": args.parallel, "sets": args.sets, "rows": rows}, lines)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="{nmt,charlm,levers,render}")
    for name in ("nmt", "charlm"):
        p = sub.add_parser(name, help=f"rnnpipe's {name} cells against the peer, {SCORE[name][1]} over seconds")
        p.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=["lstm", "gru"])
        p.add_argument("--budget", type=float, default=300.0 if name == "nmt" else 120.0,
                       help="seconds: the comparison point (default: %(default)s)")
        p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
        if name == "nmt":
            p.add_argument("--joeynmt", action="store_true", help="run JoeyNMT 2.3.0's RNN on the same data")
            p.add_argument("--peer-steps", type=int, default=1600,
                           help="JoeyNMT's updates (default: %(default)s, about 5 minutes here)")
            p.add_argument("--peer-lr", type=float, default=0.002,
                           help="JoeyNMT's constant Adam rate (default: %(default)s)")
        else:
            p.add_argument("--torch", action="store_true", help="run the plain PyTorch LSTM on the same data")
        p.set_defaults(workload=name)
    p = sub.add_parser("levers", help="one row per named variant of params.yaml (tune on dev only)")
    p.add_argument("workload", choices=["nmt", "charlm"])
    p.add_argument("--name", default="levers", help="results file suffix (default: %(default)s)")
    p.add_argument("--cells", nargs="+", default=["lstm"], choices=["lstm", "gru"])
    p.add_argument("--variant", nargs="+", action="append", required=True, metavar="NAME [KEY=VALUE ...]")
    p.add_argument("--budget", type=float, default=180.0, help="seconds (default: %(default)s)")
    p.add_argument("--parallel", type=int, default=1,
                   help="runs at a time (default: %(default)s); above 1 the seconds are not comparable")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p = sub.add_parser("render", help="rewrite a time-to-quality results file's tables from its JSON")
    p.add_argument("json")
    p = sub.add_parser("_cell", help=argparse.SUPPRESS)
    p.add_argument("workload")
    p.add_argument("cell")
    p.add_argument("--params", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--started", required=True)
    args = ap.parse_args()
    if args.command == "_cell":
        return cell_main(args)
    if args.command == "render":
        return render(args)
    doc = apply_sets(yaml.safe_load((ROOT / "params.yaml").read_text()), parse_sets(args.sets))
    return levers(args, doc) if args.command == "levers" else compare(args, doc)


if __name__ == "__main__":
    raise SystemExit(main())
