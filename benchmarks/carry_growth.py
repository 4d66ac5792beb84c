"""How large the char LM's carried LSTM cell states grow, by initial forget-gate bias.

The char LM carries its recurrent state across consecutive windows for a whole epoch
(about 490 windows of the default run); only the epoch's first window starts from zeros.
This trains ``train_charlm@lstm`` as the stage does (its ``setup``, on this checkout's
``data/prepared/charlm``) for ``--steps`` steps at each ``--forget-bias``, and records
every ``--every`` steps the mean training loss and the largest |cell state| per layer of
the carry that flows into the next window; at the end, the validation loss.

    python benchmarks/carry_growth.py --seed 1 --forget-bias 1.0 0.0   # about 3 minutes

Results: ``benchmarks/results/carry-growth.{json,md}``, with the machine. Needs a prepared
char LM (``dvc repro prepare_charlm``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_facts  # noqa: E402

from pipeline import jax_cache  # noqa: E402
from pipeline.params import from_dict  # noqa: E402


def probe(doc: dict, forget_bias: float, seed: int, steps: int, every: int) -> dict:
    import jax
    import jax.numpy as jnp

    from pipeline.stages import train_charlm

    doc = json.loads(json.dumps(doc))
    doc["charlm"]["model"]["forget_bias"] = forget_bias
    doc["charlm"]["train"]["seed"] = seed
    job, _ = train_charlm.setup(from_dict(doc), "lstm")
    state, carry, losses, rows = job.state, job.carry, [], []
    for step in range(steps):
        state, carry, out = job.train_step(state, next(job.batches), carry, jax.random.fold_in(job.key, step))
        losses.append(float(out["loss"]))
        if (step + 1) % every == 0:
            rows.append({"step": step + 1, "train_loss": round(float(np.mean(losses[-every:])), 4),
                         "max_abs_cell": [round(float(jnp.abs(c).max()), 1) for c, _ in carry]})
            print(json.dumps({"forget_bias": forget_bias, **rows[-1]}), flush=True)
    valid = job.evaluate(state.weights)["valid_loss"]
    return {"forget_bias": forget_bias, "seed": seed, "rows": rows, "valid_loss": round(float(valid), 4)}


def render(result: dict) -> str:
    biases = [r["forget_bias"] for r in result["runs"]]
    head = " | ".join(f"bias {b:g}: train loss, max abs c (layers)" for b in biases)
    lines = [f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores. "
             f"Command: `{result['command']}`.", "",
             f"| step | {head} |", "|---:|" + "---|" * len(biases)]
    for i, row in enumerate(result["runs"][0]["rows"]):
        cells = []
        for run in result["runs"]:
            r = run["rows"][i]
            cells.append(f"{r['train_loss']:.3f}, {' / '.join(f'{c:g}' for c in r['max_abs_cell'])}")
        lines.append(f"| {row['step']} | " + " | ".join(cells) + " |")
    lines.append("| valid loss at the end | " + " | ".join(f"{r['valid_loss']:.3f}" for r in result["runs"]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--forget-bias", type=float, nargs="+", default=[1.0, 0.0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=600, help="past the first epoch's end (about 490 windows)")
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/carry-growth"))
    args = ap.parse_args()
    jax_cache.enable()
    doc = yaml.safe_load(Path(args.params).read_text())
    runs = [probe(doc, b, args.seed, args.steps, args.every) for b in args.forget_bias]
    result = {"command": "python benchmarks/carry_growth.py " + " ".join(sys.argv[1:]),
              "machine": machine_facts(), "runs": runs}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    Path(args.out + ".md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
