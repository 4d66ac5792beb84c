"""Where a recurrent step's time goes: one layer's forward and backward, per time step.

For each row (LSTM/GRU at the char-LM sizes S and M of rnn_speed.py, one layer) this
times, in microseconds per time step:

    fwd          rnnpipe's forward scan (pipeline.models.rnn.recurrence)
    bwd          its backward (value_and_grad minus fwd): the backward scan, and the
                 weight-gradient matmul after the loop
    mm fwd       a scan that does nothing but the forward's recurrent matmul
                 [B, H] x [H, G] (the floor for fwd on this backend)
    mm bwd       the same for the backward's [B, G] x [G, H]
    loop         a scan whose body is one tiny add: the per-iteration cost of the loop
                 itself (dispatch, carry copies)
    onednn fwd/bwd  the same LSTM layer on oneDNN's fused LSTM (pipeline.kernels.onednn,
                 what ``kernel: auto`` runs LSTM layers on), input projection included
    torch fwd/bwd  one nn.LSTM/nn.GRU layer (input projection included), forward and
                 forward+backward minus forward
    torch mm     torch.mm of the forward's shape, T times in a Python loop

and for the whole char-LM train step of rnn_speed.py (2 layers, embedding, softmax, Adam):

    train step ms    rnnpipe's (LSTM layers on oneDNN where it builds), and faults/step: minor
                     page faults per step (fresh memory the allocator had to map again)
    torch train step ms   PyTorch's, in the same process and configuration

"other" columns are fwd - mm fwd and bwd - mm bwd: gate arithmetic plus everything
that is neither matmul nor necessary (thunk dispatch, thread hand-offs, copies).

Each configuration runs in its own process, because glibc and XLA read their settings
once, when the process starts:

    python benchmarks/step_cost.py                      # rnnpipe's runtime env against none
    python benchmarks/step_cost.py --configs default    # one configuration
    python benchmarks/step_cost.py --configs "x=--xla_cpu_multi_thread_eigen=false"
    python benchmarks/step_cost.py --probes             # the two loop-body facts behind the core

``default`` is the process as Python starts it (no malloc huge pages, XLA's defaults);
``rnnpipe`` adds what pipeline/runtime.py sets; ``name=XLA_FLAGS`` is ``rnnpipe`` plus
those XLA flags. Timings are the fastest of ``--repeats`` (on a shared 2-core VM the slow
calls measure the neighbours); configurations run one after another, so compare them
within one invocation. Needs the bench extra (torch). Benchmarks are not tests: nothing
here fails on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

COLUMNS = [
    "fwd",
    "mm_fwd",
    "bwd",
    "mm_bwd",
    "loop",
    "onednn_fwd",
    "onednn_bwd",
    "step_ms",
    "faults",
    "torch_fwd",
    "torch_bwd",
    "torch_mm",
    "torch_step_ms",
]


def timed(fn, repeats: int) -> float:
    """Fastest seconds of ``fn()`` over ``repeats`` calls, after one warm-up call.

    The minimum, not the median: on a shared 2-core VM the slow calls measure the
    neighbours, and a cost breakdown wants what the code itself costs."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def jax_row(cell: str, size: str, repeats: int) -> dict[str, float]:
    """Per-step microseconds of the JAX parts (one process, one XLA configuration)."""
    import jax
    import jax.numpy as jnp
    from rnn_speed import CONFIGS, JaxRunner

    from pipeline.models.rnn import GATES, recurrence, zero_carry

    b, t, h = (CONFIGS[size][k] for k in ("batch", "time", "hidden"))
    g = GATES[cell] * h
    k = jax.random.split(jax.random.key(0), 4)
    wh = jax.random.normal(k[0], (h, g)) / h**0.5
    bh = jnp.zeros((g,))
    xp = jax.random.normal(k[1], (t, b, g))
    ct = jax.random.normal(k[2], (t, b, h))
    carry = zero_carry(cell, b, h)

    fwd = jax.jit(lambda wh, bh, c, xp: recurrence(cell, False, wh, bh, c, xp))

    def loss(wh, bh, c, xp):
        _, ys = recurrence(cell, False, wh, bh, c, xp)
        return jnp.vdot(ys, ct)

    both = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))

    def mm_scan(w, x0):
        def body(x, _):  # the next step depends on this one's product, as in the recurrence
            y = x @ w
            return (y[:, : x.shape[1]] if y.shape[1] > x.shape[1] else x.at[:, : y.shape[1]].set(y)), None

        return jax.lax.scan(body, x0, None, length=t)[0]

    mm_f = jax.jit(mm_scan)
    w_t = jnp.asarray(wh.T)
    loop = jax.jit(lambda x0: jax.lax.scan(lambda x, _: (x + 1.0, None), x0, None, length=t)[0])
    h0, g0 = jnp.zeros((b, h)), jnp.zeros((b, g))

    def block(f, *args):
        return lambda: jax.block_until_ready(f(*args))

    us = 1e6 / t
    out = {"fwd": timed(block(fwd, wh, bh, carry, xp), repeats) * us,
           "both": timed(block(both, wh, bh, carry, xp), repeats) * us,
           "mm_fwd": timed(block(mm_f, wh, h0), repeats) * us,
           "mm_bwd": timed(block(mm_f, w_t, g0), repeats) * us,
           "loop": timed(block(loop, h0), repeats) * us}
    out["bwd"] = out.pop("both") - out["fwd"]
    out.update(onednn_row(cell, wh, bh, carry, ct, repeats))
    out["step_ms"], out["faults"] = train_step(JaxRunner(cell, CONFIGS[size], 64), repeats)
    return out


def onednn_row(cell: str, wh, bh, carry, ct, repeats: int) -> dict[str, float]:
    """Per-step microseconds of the same LSTM layer on oneDNN (input projection included,
    as in PyTorch's columns); NaN for GRU or where the kernel cannot run."""
    import jax
    import jax.numpy as jnp

    from pipeline.kernels import onednn

    if cell != "lstm" or onednn.unavailable():
        return {"onednn_fwd": float("nan"), "onednn_bwd": float("nan")}
    t, b, h = ct.shape
    x = jax.random.normal(jax.random.key(5), (t, b, h))
    wi = jax.random.normal(jax.random.key(6), wh.shape) / h**0.5

    def loss(x, wi, wh, bh, c):
        return jnp.vdot(onednn.lstm(x, c, wi, wh, bh, False)[1], ct)

    fwd = jax.jit(lambda *a: onednn.lstm(a[0], a[4], *a[1:4], False))
    both = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4)))
    us = 1e6 / t
    f = timed(lambda: jax.block_until_ready(fwd(x, wi, wh, bh, carry)), repeats) * us
    return {"onednn_fwd": f, "onednn_bwd": timed(lambda: jax.block_until_ready(both(x, wi, wh, bh, carry)),
                                                 repeats) * us - f}


def train_step(runner, repeats: int) -> tuple[float, float]:
    """The whole char-LM train step of rnn_speed.py (2 layers, embedding, softmax, Adam):
    fastest milliseconds, and minor page faults per step (fresh memory touched)."""
    import resource

    runner.steps(2)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ms = timed(lambda: runner.steps(1), repeats) * 1e3
    return ms, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (repeats + 1)


def torch_row(cell: str, size: str, repeats: int) -> dict[str, float]:
    """Per-step microseconds of one PyTorch layer of the same shape."""
    import torch
    from rnn_speed import CONFIGS, TorchRunner

    b, t, h = (CONFIGS[size][k] for k in ("batch", "time", "hidden"))
    torch.manual_seed(0)
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](h, h, batch_first=False)
    x = torch.randn(t, b, h, requires_grad=True)
    ct = torch.randn(t, b, h)

    def fwd():
        with torch.no_grad():
            layer(x)

    def both():
        y, _ = layer(x)
        (y * ct).sum().backward()

    a, w = torch.randn(b, h), torch.randn(h, {"lstm": 4, "gru": 3}[cell] * h)

    def mm():
        for _ in range(t):
            torch.mm(a, w)

    us = 1e6 / t
    f = timed(fwd, repeats) * us
    step, _ = train_step(TorchRunner(cell, CONFIGS[size], 64), repeats)
    return {"torch_fwd": f, "torch_bwd": timed(both, repeats) * us - f, "torch_mm": timed(mm, repeats) * us,
            "torch_step_ms": step}


def probes(repeats: int) -> list[str]:
    """Two facts of XLA:CPU the core is built around, as Markdown lines (microseconds per
    loop iteration, [32, 256] float32 arrays, 64 iterations):

    - a scan body that writes k outputs, or runs k dependent kernels (plus the loop
      counter's): at most 8 kernels run in order on the calling thread, more go through
      the thread pool, one hand-off each;
    - a body that reads its step of a [T, B, 4H] gate slab and slices the 4 gates, against
      one that reads 4 per-gate [T, B, H] arrays.
    """
    import jax
    import jax.numpy as jnp

    t, b, h = 64, 32, 256
    k = jax.random.split(jax.random.key(0), 3)
    x0, slab = jax.random.normal(k[0], (b, h)), jax.random.normal(k[1], (t, b, 4 * h))
    gates = jnp.split(slab, 4, axis=-1)

    def per_step(f, *args):
        f = jax.jit(f)
        return timed(lambda: jax.block_until_ready(f(*args)), repeats) * 1e6 / t

    lines = ["| scan body | us per step |", "|---|---:|"]
    for n in (1, 2, 4, 8):
        outs = lambda x, n=n: jax.lax.scan(lambda c, _: (c * 0.99, tuple(c * (1.0 + j) for j in range(n))),
                                           x, None, length=t)
        lines.append(f"| {n} output(s) | {per_step(outs, x0):.2f} |")

    def chain(x, n):
        def body(c, _):
            for _ in range(n):  # the barrier keeps each tanh its own kernel
                c = jax.lax.optimization_barrier(jnp.tanh(c))
            return c, None

        return jax.lax.scan(body, x, None, length=t)[0]

    for n in (1, 2, 4, 8):
        lines.append(f"| {n} dependent kernel(s) | {per_step(lambda x, n=n: chain(x, n), x0):.2f} |")
    sliced = lambda x, xs: jax.lax.scan(
        lambda c, s: (c * s[:, :h] + s[:, h:2 * h] * s[:, 2 * h:3 * h] - s[:, 3 * h:], None), x, xs)[0]
    split = lambda x, xs: jax.lax.scan(lambda c, s: (c * s[0] + s[1] * s[2] - s[3], None), x, xs)[0]
    lines.append(f"| 4 gates sliced from the step of a slab | {per_step(sliced, x0, slab):.2f} |")
    lines.append(f"| 4 gates from per-gate arrays | {per_step(split, x0, gates):.2f} |")
    return lines


def child(rows: list[str], repeats: int) -> None:
    """Run in a subprocess under one XLA_FLAGS: print one JSON object per row."""
    for spec in rows:
        cell, size = spec.split("-")
        print(json.dumps({"row": spec, **jax_row(cell, size, repeats), **torch_row(cell, size, repeats)}),
              flush=True)


def run_config(name: str, flags: str | None, rows: list[str], repeats: int) -> list[dict]:
    from pipeline import runtime

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    env.pop("GLIBC_TUNABLES", None)
    if name == "default":
        env["RNNPIPE_RUNTIME_ENV"] = "0"  # the process as Python starts it: rnnpipe sets nothing
    else:
        env = runtime.environment(env)
        if name != "rnnpipe":
            env["XLA_FLAGS"] = flags or ""
    cmd = [sys.executable, __file__, "--child", "--rows", *rows, "--repeats", str(repeats)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"configuration {name!r} (XLA_FLAGS={env.get('XLA_FLAGS', '')!r}) failed:\n{proc.stderr}")
    out = proc.stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def table(results: dict[str, list[dict]]) -> list[str]:
    nan = float("nan")
    lines = ["| config | row | fwd | mm fwd | other fwd | bwd | mm bwd | other bwd | loop | onednn fwd | onednn bwd "
             "| torch fwd | torch bwd | torch mm | train step ms | faults/step | torch train step ms |",
             "|---|---|" + "---:|" * 15]
    for name, rows in results.items():
        for r in rows:
            lines.append(f"| {name} | {r['row']} | {r['fwd']:.1f} | {r['mm_fwd']:.1f} | {r['fwd'] - r['mm_fwd']:.1f} "
                         f"| {r['bwd']:.1f} | {r['mm_bwd']:.1f} | {r['bwd'] - r['mm_bwd']:.1f} | {r['loop']:.2f} "
                         f"| {r.get('onednn_fwd', nan):.1f} | {r.get('onednn_bwd', nan):.1f} "
                         f"| {r['torch_fwd']:.1f} | {r['torch_bwd']:.1f} | {r['torch_mm']:.1f} | {r['step_ms']:.1f} "
                         f"| {r['faults']:,.0f} | {r['torch_step_ms']:.1f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", default=["lstm-S", "lstm-M", "gru-S", "gru-M"])
    ap.add_argument("--configs", nargs="+", default=["default", "rnnpipe"],
                    help="NAME=XLA_FLAGS, or 'default' / 'rnnpipe'")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/step-cost"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--probes", action="store_true",
                    help="only the two XLA:CPU loop-body probes (kernel count, gate slicing), in this process")
    args = ap.parse_args()
    if args.child:
        return child(args.rows, args.repeats)
    if args.probes:
        print("\n".join(probes(args.repeats)))
        return None

    from machine import machine_facts
    from rnn_speed import write_results

    results = {}
    for spec in args.configs:
        name, _, flags = spec.partition("=")
        results[name] = run_config(name, flags, args.rows, args.repeats)
        print("\n".join(table({name: results[name]})[2:]), flush=True)
    facts = machine_facts()
    header = (f"Microseconds per time step, one layer ({facts['cpu']}, {facts['cores']} cores, jax {facts['jax']}, "
              f"torch {facts['torch']}).")
    configs = {spec.partition("=")[0]: spec.partition("=")[2] for spec in args.configs}
    write_results(args.out, {"machine": facts, "configs": configs, "repeats": args.repeats, "results": results},
                  [header, "", *table(results)])


if __name__ == "__main__":
    main()
