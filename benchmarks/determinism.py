"""Which settings change the floats: the same 30 char-LM train steps under XLA:CPU settings
that stand in for another machine.

A reviewer's numbers come from one machine; a user's from another. This asks, on one
machine, whether any setting makes training bit-identical whatever the CPU offers:

- ``--xla_cpu_max_isa=AVX2`` / ``SSE4_2``: XLA's own code as on a CPU without AVX-512;
- ``--xla_cpu_experimental_ynn_fusion_type=`` (empty): Eigen's matmuls instead of YNNPACK's;
- ``taskset -c 0``: one core instead of all (a machine with another core count);
- and their combinations.

Each setting runs in its own process (rnn_speed's lstm-S model and train step: embedding,
2-layer LSTM, softmax, Adam) for 30 steps from the same seed; the table gives a hash of
the final parameters, the last loss and the seconds, and which settings agree.

    python benchmarks/determinism.py           # about 2 minutes

Benchmarks are not tests: nothing here fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_facts  # noqa: E402

EIGEN = "--xla_cpu_experimental_ynn_fusion_type="
SETTINGS = {  # name: (XLA_FLAGS, command prefix)
    "default": ("", []),
    "default, again": ("", []),
    "max ISA AVX2": ("--xla_cpu_max_isa=AVX2", []),
    "max ISA SSE4.2": ("--xla_cpu_max_isa=SSE4_2", []),
    "one core": ("", ["taskset", "-c", "0"]),
    "Eigen matmuls": (EIGEN, []),
    "Eigen, AVX2": (f"{EIGEN} --xla_cpu_max_isa=AVX2", []),
    "Eigen, AVX2, one core": (f"{EIGEN} --xla_cpu_max_isa=AVX2", ["taskset", "-c", "0"]),
    "Eigen single-threaded": (f"{EIGEN} --xla_cpu_multi_thread_eigen=false", []),
    "Eigen single-threaded, one core": (f"{EIGEN} --xla_cpu_multi_thread_eigen=false", ["taskset", "-c", "0"]),
}


def child(steps: int) -> None:
    import hashlib
    import time

    import jax
    import numpy as np
    from rnn_speed import CONFIGS, JaxRunner

    r = JaxRunner("lstm", CONFIGS["S"], 64)
    started, loss = time.perf_counter(), None
    for _ in range(steps):
        r.state, r.carry, out = r.step_fn(r.state, r.batch, r.carry, r.key)
        loss = float(out["loss"])
    seconds = time.perf_counter() - started
    digest = hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(r.state.params)))
    print(json.dumps({"params": digest.hexdigest()[:12], "loss": loss, "seconds": round(seconds, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/determinism"))
    args = ap.parse_args()
    if args.child:
        return child(args.steps)
    from pipeline import runtime

    results = {}
    for name, (flags, prefix) in SETTINGS.items():
        env = runtime.environment(dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags))
        done = subprocess.run([*prefix, sys.executable, __file__, "--child", "--steps", str(args.steps)], env=env,
                              capture_output=True, text=True, check=True)
        results[name] = {"xla_flags": flags, "prefix": " ".join(prefix), **json.loads(done.stdout.splitlines()[-1])}
        print(name, results[name], flush=True)
    reference = results["default"]["params"]
    facts = machine_facts()
    lines = [f"{args.steps} lstm-S train steps per setting, {facts['cpu']}, {facts['cores']} cores, jax {facts['jax']} "
             "(`python benchmarks/determinism.py`).", "",
             "| setting | XLA_FLAGS | prefix | params hash | last loss | same params as default | seconds |",
             "|---|---|---|---|---:|---|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | `{r['xla_flags'] or '-'}` | `{r['prefix'] or '-'}` | {r['params']} | {r['loss']!r} | "
                     f"{'yes' if r['params'] == reference else 'no'} | {r['seconds']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"machine": facts, "steps": args.steps, "results": results},
                                                   indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
