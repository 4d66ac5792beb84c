"""Recurrent training throughput: rnnpipe's JAX core against PyTorch, same machine, same config.

A char-LM training step (embedding, stacked LSTM/GRU, softmax over 65 characters,
cross-entropy, gradient clipping at 1.0, Adam) at two sizes:

    S: batch 32, 64 steps, hidden 256, 2 layers      M: batch 64, 100 steps, hidden 512, 2 layers

A third column is the plain Flax model (``nn.RNN`` over ``OptimizedLSTMCell``/``GRUCell``).
Each framework runs in its own process (:class:`Worker`: sharing one process, both ran
about 1.6x slower than alone) and does ``--rounds`` timed rounds of
``--steps`` train steps, interleaved A B C A B C so that all see the same machine state;
warm-up (compilation) is timed apart. All run under rnnpipe's runtime environment
(pipeline/runtime.py: malloc huge pages), the same for every framework. Reported: median
tokens/s, the min-max range, the ratios to PyTorch and Flax, and the
achieved GFLOP/s (matmul work of forward + backward, about 3x the forward) against a
measured float32 matmul peak. Needs the benchmark extra (`pip install -e ".[bench]"`):

    python benchmarks/rnn_speed.py                      # all four rows, ~6 min on 2 cores
    python benchmarks/rnn_speed.py --rows lstm-S gru-S --rounds 3
    python benchmarks/rnn_speed.py --device gpu --kernel cudnn   # on an NVIDIA GPU: PyTorch on CUDA (cuDNN)

On a GPU (``--device gpu``) every framework runs there: JAX with ``JAX_PLATFORMS=cuda``
and without preallocation (the workers share the GPU), PyTorch on ``cuda`` with its
defaults (``nn.LSTM`` on cuDNN); a round ends when the GPU has finished it.

Benchmarks are not tests: nothing here fails on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_facts  # noqa: E402

VOCAB = 65
PLATFORMS = {"cpu": "cpu", "gpu": "cuda"}  # --device -> JAX_PLATFORMS of the workers
CONFIGS = {"S": {"batch": 32, "time": 64, "hidden": 256, "layers": 2},
           "M": {"batch": 64, "time": 100, "hidden": 512, "layers": 2}}


def flops_per_token(cell: str, hidden: int, layers: int, embed: int) -> float:
    """Matmul FLOPs of one training token: forward (input + recurrent gates per layer,
    output projection), times 3 for forward plus backward."""
    gates = {"lstm": 4, "gru": 3}[cell] * hidden
    forward = sum(2 * gates * ((embed if i == 0 else hidden) + hidden) for i in range(layers))
    forward += 2 * hidden * VOCAB
    return 3.0 * forward


def matmul_peak(n: int = 2048, repeats: int = 30) -> float:
    """Measured float32 matmul GFLOP/s (JAX/XLA on this machine's CPU): the fastest of
    ``repeats``. On the shared 2-core VM the same call measured anywhere from 190 to 410
    GFLOP/s from one run to the next, so every run measures its own and the percentages
    of peak compare only within a run."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


class Worker:
    """One framework's runner in its own process, driven over a pipe.

    Frameworks share nothing but the machine. Sharing one process, rnnpipe and PyTorch
    both ran about 1.6x slower than alone on 2 cores (at b2f4e0b, lstm-S: 13.5k and 23.4k
    tok/s against 20.9k and 37.2k), most likely their thread pools (XLA's, PyTorch's
    OpenMP) contending. The worker builds its runner and runs 2 steps (compilation,
    allocation; reported apart as warm-up), then runs ``steps`` per ``run`` request.
    Every worker gets rnnpipe's runtime environment (pipeline/runtime.py), so all
    frameworks run on the same allocator settings and a ratio compares the code.
    """

    def __init__(self, name: str, argv: list[str], device: str = "cpu"):
        import subprocess

        from pipeline import device as devices
        from pipeline import runtime

        self.name = name
        env = runtime.environment(devices.shared_memory(dict(os.environ, JAX_PLATFORMS=PLATFORMS[device])))
        self.proc = subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1)
        self.warmup_seconds = self._reply("ready")

    def _reply(self, what: str) -> float:
        line = self.proc.stdout.readline()
        if not line.startswith(what + " "):
            self.proc.kill()
            raise SystemExit(f"benchmark worker {self.name!r} failed (no {what!r}); its error is above")
        return float(line.split()[1])

    def run(self) -> float:
        """Seconds for one round of ``steps``."""
        self.proc.stdin.write("run\n")
        return self._reply("done")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def serve(make, steps: int) -> None:
    """The worker side of :class:`Worker`: build, warm up, then time rounds of ``steps``
    train steps on request."""
    t = time.perf_counter()
    runner = make()
    runner.steps(2)
    print(f"ready {time.perf_counter() - t:.2f}", flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            t = time.perf_counter()
            runner.steps(steps)
            print(f"done {time.perf_counter() - t:.6f}", flush=True)


def isolated(workers: dict[str, list[str]], rounds: int, units: float,
             device: str = "cpu") -> tuple[dict, dict[str, float]]:
    """Start one :class:`Worker` per framework (one at a time, so warm-ups do not overlap),
    then interleave their rounds A B C A B C. Returns per name the median, min and max of
    ``units`` per second, and the warm-up seconds."""
    started = {name: Worker(name, argv, device) for name, argv in workers.items()}
    try:
        rates = interleaved({name: w.run for name, w in started.items()}, rounds, units, timed_by_caller=False)
    finally:
        for w in started.values():
            w.close()
    return rates, {name: round(w.warmup_seconds, 2) for name, w in started.items()}


def interleaved(runs: dict, rounds: int, units: float, timed_by_caller: bool = True) -> dict[str, dict[str, float]]:
    """Call each of ``runs`` in turn, A B C A B C, ``rounds`` times; per name the median,
    min and max of ``units`` per second. With ``timed_by_caller=False`` each run returns
    its own seconds (a worker process times itself, without the pipe)."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t = time.perf_counter()
            seconds = run()
            if timed_by_caller:
                seconds = time.perf_counter() - t
            rates[name].append(units / seconds)
    return {name: {"median": statistics.median(r), "min": min(r), "max": max(r)} for name, r in rates.items()}


def machine_header(peak: float) -> tuple[dict, str]:
    """The machine's facts as a JSON record and as the results' first Markdown line."""
    facts = machine_facts()
    on = "" if facts["device"].endswith(" cpu") else f", device {facts['device']}"
    line = (
        f"{facts['cpu']}, {facts['cores']} cores{on}; measured float32 matmul peak {peak:.0f} GFLOP/s "
        f"(jax {facts['jax']}, torch {facts['torch']}; every framework in its own process, "
        f"GLIBC_TUNABLES={facts['glibc_tunables'] or 'unset'}, transparent huge pages {facts['transparent_hugepage']})."
    )
    return facts, line


def write_results(out: str | Path, record: dict, lines: list[str]) -> None:
    """``out``.json (every field) and ``out``.md (the table), and the table on stdout."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


class JaxRunner:
    """rnnpipe's own model and train step (pipeline.models.charlm + pipeline.training)."""

    name = "jax"

    def __init__(self, cell: str, cfg: dict, embed: int, precision: str = "float32", kernel: str = "auto"):
        import jax

        from pipeline.models.charlm import CharLM
        from pipeline.models.rnn import initial_carries
        from pipeline.training import losses, optim, steps

        b, t, h, n = cfg["batch"], cfg["time"], cfg["hidden"], cfg["layers"]
        model = CharLM(vocab=VOCAB, cell=cell, embed=embed, hidden=h, layers=n, dropout=0.0, precision=precision,
                       kernel=kernel)
        self.carry = initial_carries(cell, n, h, b)
        tx = optim.make_optimizer(2e-3, 1.0)
        x = np.random.default_rng(0).integers(0, VOCAB, (b, t + 1)).astype(np.int32)
        self.batch = {"inputs": x[:, :-1], "targets": x[:, 1:], "reset": np.bool_(False)}
        self.state = steps.create_state(model, jax.random.key(0), tx, self.batch["inputs"], self.carry)
        self.step_fn = steps.make_train_step(losses.charlm_loss(model))
        self.key = jax.random.key(1)

    def steps(self, n: int) -> None:
        loss = None
        for _ in range(n):
            self.state, self.carry, out = self.step_fn(self.state, self.batch, self.carry, self.key)
            loss = out["loss"]
        loss.block_until_ready()


class FlaxRunner:
    """The plain Flax model: ``nn.RNN(nn.OptimizedLSTMCell | nn.GRUCell)`` per layer, the
    same loss, optimizer and jitted, donating train step as ours."""

    name = "flax"

    def __init__(self, cell: str, cfg: dict, embed: int):
        import flax.linen as nn
        import jax
        import jax.numpy as jnp
        import optax
        from flax.training import train_state

        from pipeline.training import optim

        b, t, h, n = cfg["batch"], cfg["time"], cfg["hidden"], cfg["layers"]
        make_cell = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[cell]

        class Model(nn.Module):
            @nn.compact
            def __call__(self, x, carries):
                y = nn.Embed(VOCAB, embed)(x)
                out = []
                for i in range(n):
                    c, y = nn.RNN(make_cell(h), return_carry=True, name=f"rnn{i}")(y, initial_carry=carries[i])
                    out.append(c)
                return out, nn.Dense(VOCAB)(y)

        model = Model()
        zeros = jnp.zeros((b, h))
        self.carry = [(zeros, zeros) if cell == "lstm" else zeros for _ in range(n)]
        x = np.random.default_rng(0).integers(0, VOCAB, (b, t + 1)).astype(np.int32)
        self.batch = {"inputs": x[:, :-1], "targets": x[:, 1:]}
        params = model.init(jax.random.key(0), self.batch["inputs"], self.carry)["params"]
        self.state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                                   tx=optim.make_optimizer(2e-3, 1.0))

        def loss_fn(params, batch, carry):
            carry, logits = model.apply({"params": params}, batch["inputs"], carry)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()
            return loss, jax.lax.stop_gradient(carry)

        def step(state, batch, carry):
            (loss, carry), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, carry)
            return state.apply_gradients(grads=grads), carry, loss

        self.step_fn = jax.jit(step, donate_argnums=(0,))

    def steps(self, n: int) -> None:
        loss = None
        for _ in range(n):
            self.state, self.carry, loss = self.step_fn(self.state, self.batch, self.carry)
        loss.block_until_ready()


class TorchRunner:
    """The PyTorch model a user would write: nn.Embedding, nn.LSTM/nn.GRU, nn.Linear."""

    name = "torch"

    def __init__(self, cell: str, cfg: dict, embed: int, device: str = "cpu"):
        import torch

        torch.manual_seed(0)
        dev = torch.device("cuda" if device == "gpu" else "cpu")
        b, t, h, n = cfg["batch"], cfg["time"], cfg["hidden"], cfg["layers"]
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]

        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = torch.nn.Embedding(VOCAB, embed)
                self.rnn = rnn(embed, h, num_layers=n, batch_first=True)
                self.out = torch.nn.Linear(h, VOCAB)

            def forward(self, x, state):
                y, state = self.rnn(self.embed(x), state)
                return self.out(y), state

        self.torch, self.dev = torch, dev
        self.model = Model().to(dev)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=2e-3)
        x = torch.from_numpy(np.random.default_rng(0).integers(0, VOCAB, (b, t + 1)).astype(np.int64)).to(dev)
        self.inputs, self.targets = x[:, :-1], x[:, 1:]
        zeros = torch.zeros(n, b, h, device=dev)
        self.state = (zeros, zeros.clone()) if cell == "lstm" else zeros

    def steps(self, n: int) -> None:
        torch = self.torch
        for _ in range(n):
            logits, state = self.model(self.inputs, self.state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), self.targets.reshape(-1))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        if self.dev.type == "cuda":
            torch.cuda.synchronize()


RUNNERS = {"jax": lambda cell, cfg, embed, precision, kernel, device: JaxRunner(cell, cfg, embed, precision, kernel),
           "flax": lambda cell, cfg, embed, precision, kernel, device: FlaxRunner(cell, cfg, embed),
           "torch": lambda cell, cfg, embed, precision, kernel, device: TorchRunner(cell, cfg, embed, device)}


def resolved_kernel(cell: str, precision: str, kernel: str, device: str = "cpu") -> str:
    """What our LSTM/GRU layers run on for this row: ``cudnn``, ``onednn`` or ``scan``
    (on a GPU, :func:`pipeline.models.rnn.use_cudnn`'s rule, whatever backend this
    process has)."""
    from pipeline.models.rnn import use_cudnn, use_onednn

    if device == "gpu":
        return "cudnn" if use_cudnn(kernel, cell, precision, backend="gpu") else "scan"
    return "onednn" if use_onednn(kernel, cell, False, precision) else "scan"


def bench_row(cell: str, size: str, rounds: int, steps: int, embed: int, precision: str = "float32",
              kernel: str = "auto", device: str = "cpu", frameworks: tuple[str, ...] = tuple(RUNNERS)) -> dict:
    cfg = CONFIGS[size]
    tokens = cfg["batch"] * cfg["time"] * steps
    argv = [__file__, "--rows", f"{cell}-{size}", "--steps", str(steps), "--embed", str(embed),
            "--precision", precision, "--kernel", kernel, "--device", device, "--worker"]
    rates, warmup = isolated({name: [*argv, name] for name in frameworks}, rounds, tokens, device)
    flops = flops_per_token(cell, cfg["hidden"], cfg["layers"], embed)
    name = f"{cell}-{size}" + ("" if precision == "float32" else f"-{precision}")
    row = {"row": name, **cfg, "embed": embed, "device": device,
           "jax_kernel": resolved_kernel(cell, precision, kernel, device), "rounds": rounds,
           "steps_per_round": steps, "warmup_seconds": warmup}
    for name, r in rates.items():
        row[name] = {"median_tok_s": round(r["median"]), "min": round(r["min"]), "max": round(r["max"]),
                     "gflop_s": round(r["median"] * flops / 1e9, 1)}
    row["ratio_jax_over_torch"] = round(row["jax"]["median_tok_s"] / row["torch"]["median_tok_s"], 3)
    if "flax" in row:
        row["ratio_jax_over_flax"] = round(row["jax"]["median_tok_s"] / row["flax"]["median_tok_s"], 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", default=["lstm-S", "lstm-M", "gru-S", "gru-M"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=0, help="steps per round (default: 20 for S, 6 for M)")
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                    help="of our recurrent matmuls (the others stay float32)")
    ap.add_argument("--kernel", choices=["auto", "scan", "onednn", "cudnn"], default="auto",
                    help="rnnpipe's recurrent kernel (params.yaml's model.kernel; auto: oneDNN for LSTM "
                         "on the CPU where it builds, else the scan)")
    ap.add_argument("--device", choices=sorted(PLATFORMS), default="cpu",
                    help="where every framework trains (default: %(default)s)")
    ap.add_argument("--frameworks", nargs="+", choices=["jax", "flax", "torch"], default=["jax", "flax", "torch"],
                    help="which to run (rnnpipe's jax and torch always; default: all three)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/rnn-speed"))
    ap.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        cell, size = args.rows[0].split("-")
        return serve(lambda: RUNNERS[args.worker](cell, CONFIGS[size], args.embed, args.precision,
                                                          args.kernel, args.device), args.steps)
    from pipeline import runtime

    runtime.ensure([__file__, *sys.argv[1:]])  # the matmul peak is measured here: same environment as the workers

    peak = matmul_peak()
    rows = []
    for spec in args.rows:
        cell, size = spec.split("-")
        steps = args.steps or (20 if size == "S" else 6)
        frameworks = tuple(dict.fromkeys(["jax", *args.frameworks, "torch"]))
        row = bench_row(cell, size, args.rounds, steps, args.embed, args.precision, args.kernel, args.device,
                        frameworks)
        for name in frameworks:
            row[name]["pct_of_peak"] = round(100 * row[name]["gflop_s"] / peak, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    facts, header = machine_header(peak)
    record = {"machine": facts, "matmul_peak_gflop_s": round(peak, 1), "rows": rows}
    lines = [
        header,
        "",
        "| row | B, T, H, layers | rnnpipe kernel | rnnpipe JAX tok/s (min-max) | plain Flax tok/s "
        "| PyTorch tok/s (min-max) "
        "| JAX / PyTorch | JAX / Flax | JAX GFLOP/s (% peak) | PyTorch GFLOP/s (% peak) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        j, t = r["jax"], r["torch"]
        flax = f"{r['flax']['median_tok_s']:,}" if "flax" in r else "-"
        over_flax = f"{r['ratio_jax_over_flax']:.2f}x" if "flax" in r else "-"
        lines.append(f"| {r['row']} | {r['batch']}, {r['time']}, {r['hidden']}, {r['layers']} | {r['jax_kernel']} | "
                     f"{j['median_tok_s']:,} ({j['min']:,}-{j['max']:,}) | {flax} | "
                     f"{t['median_tok_s']:,} ({t['min']:,}-{t['max']:,}) | {r['ratio_jax_over_torch']:.2f}x | "
                     f"{over_flax} | {j['gflop_s']} ({j['pct_of_peak']}%) | {t['gflop_s']} ({t['pct_of_peak']}%) |")
    write_results(args.out, record, lines)


if __name__ == "__main__":
    main()
