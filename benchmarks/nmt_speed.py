"""Attention NMT training throughput against PyTorch, and beam-search decoding speed.

Training: Luong attention (``general`` score, attentional vector tanh(W_c [c; h])),
bidirectional 2x256 LSTM encoder, 2x256 LSTM decoder, embeddings 256, vocabularies 8k,
batch 64, source and target length 25, Adam with gradient clipping at 1.0, float32.
Two rows: without input feeding (the decoder's recurrence is one scan and attention one
batched matmul) and with it (the decoder steps through time). PyTorch runs the model its
users would write: ``nn.LSTM`` encoder and decoder (``nn.LSTMCell`` per layer when the
attentional vector is fed back), ``bmm`` attention. Each framework trains in its own
process (rnn_speed.Worker), rounds interleaved A B A B; median target tokens/s, min-max,
the ratio.

Decoding: beam search (beam 5, GNMT length penalty, each source allowed twice its length)
over 32 sources of 25 tokens with an untrained model, as a whole ``lax.while_loop`` in one
jitted function (``pipeline.inference.translator.make_translator``) against the same search driven by
a plain Python loop that calls the jitted step and checks the stopping rule on the host
each step. Both return the same ids (checked). Reported in sentences/s.

    pip install -e ".[bench]" && python benchmarks/nmt_speed.py     # ~5 min on 2 cores
    python benchmarks/nmt_speed.py --device gpu --kernel cudnn --rows luong   # on an NVIDIA GPU

``--kernel`` picks our LSTM layers' kernel (the encoder's and the decoder's without input
feeding; with it, the decoder steps through time on the scan's step function whatever
the kernel). ``--device gpu`` runs both frameworks on the GPU (rnn_speed.py says how).

Benchmarks are not tests: nothing here fails on timing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rnn_speed import (  # noqa: E402
    PLATFORMS,
    interleaved,
    isolated,
    machine_header,
    matmul_peak,
    resolved_kernel,
    serve,
    write_results,
)

CFG = {"batch": 64, "src_len": 25, "trg_len": 25, "vocab": 8000, "embed": 256, "hidden": 256, "layers": 2}


def flops_per_target_token(feed: bool) -> float:
    """Matmul FLOPs of one training target token (forward x3 for forward + backward)."""
    c = CFG
    h, e, n, v, s = c["hidden"], c["embed"], c["layers"], c["vocab"], c["src_len"]
    enc = 2 * sum(2 * 4 * h * ((e if i == 0 else 2 * h) + h) for i in range(n))  # both directions
    dec = sum(2 * 4 * h * ((e + (h if feed else 0) if i == 0 else h) + h) for i in range(n))
    attn = 2 * s * h + 2 * s * 2 * h + 2 * 3 * h * h  # scores, context, combine
    keys = 2 * 2 * h * h  # W_a over the memory, once per source token
    return 3.0 * (enc + keys + dec + attn + 2 * h * v)


def batch_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    b, v = CFG["batch"], CFG["vocab"]
    return {"src": rng.integers(4, v, (b, CFG["src_len"])).astype(np.int32),
            "src_len": np.full((b,), CFG["src_len"], np.int32),
            "trg": rng.integers(4, v, (b, CFG["trg_len"] + 1)).astype(np.int32),
            "trg_len": np.full((b,), CFG["trg_len"], np.int32)}


def our_model(feed: bool, cell: str = "lstm", kernel: str = "auto"):
    from pipeline.models.seq2seq import Seq2Seq

    c = CFG
    return Seq2Seq(src_vocab=c["vocab"], trg_vocab=c["vocab"], cell=cell, embed=c["embed"], hidden=c["hidden"],
                   layers=c["layers"], bidirectional=True, attention="general", dropout=0.0, input_feeding=feed,
                   kernel=kernel)


class JaxNMT:
    name = "jax"

    def __init__(self, feed: bool, kernel: str = "auto", device: str = "cpu"):
        import jax

        from pipeline.training import losses, optim, steps

        model = our_model(feed, kernel=kernel)
        self.batch = batch_arrays()
        self.state = steps.create_state(model, jax.random.key(0), optim.make_optimizer(1e-3, 1.0),
                                        self.batch["src"], self.batch["src_len"], self.batch["trg"][:, :-1])
        self.step_fn = steps.make_train_step(losses.nmt_loss(model))
        self.key = jax.random.key(1)

    def steps(self, n: int) -> None:
        loss = None
        for _ in range(n):
            self.state, _, out = self.step_fn(self.state, self.batch, None, self.key)
            loss = out["loss"]
        loss.block_until_ready()


class TorchNMT:
    name = "torch"

    def __init__(self, feed: bool, kernel: str = "auto", device: str = "cpu"):
        import torch
        from torch import nn

        torch.manual_seed(0)
        dev = torch.device("cuda" if device == "gpu" else "cpu")
        c = CFG
        v, e, h, layers = c["vocab"], c["embed"], c["hidden"], c["layers"]

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.src_embed, self.trg_embed = nn.Embedding(v, e), nn.Embedding(v, e)
                self.encoder = nn.LSTM(e, h, layers, batch_first=True, bidirectional=True)
                self.bridge = nn.ModuleList([nn.Linear(2 * h, h) for _ in range(2 * layers)])
                self.attn_key = nn.Linear(2 * h, h, bias=False)
                self.combine = nn.Linear(3 * h, h, bias=False)
                if feed:
                    self.cells = nn.ModuleList([nn.LSTMCell(e + h if i == 0 else h, h) for i in range(layers)])
                else:
                    self.decoder = nn.LSTM(e, h, layers, batch_first=True)
                self.out = nn.Linear(h, v)

            def attend(self, q, keys, memory):  # q [B, T, H]
                weights = torch.softmax(torch.bmm(q, keys.transpose(1, 2)), dim=-1)
                return torch.tanh(self.combine(torch.cat([torch.bmm(weights, memory), q], -1)))

            def forward(self, src, trg_in):
                memory, (hn, cn) = self.encoder(self.src_embed(src))
                b = src.shape[0]
                both = lambda s: s.view(layers, 2, b, h).permute(0, 2, 1, 3).reshape(layers, b, 2 * h)
                hn, cn = both(hn), both(cn)
                c0 = torch.stack([torch.tanh(self.bridge[2 * i](cn[i])) for i in range(layers)])
                h0 = torch.stack([torch.tanh(self.bridge[2 * i + 1](hn[i])) for i in range(layers)])
                keys, y = self.attn_key(memory), self.trg_embed(trg_in)
                if not feed:
                    out, _ = self.decoder(y, (h0, c0))
                    return self.out(self.attend(out, keys, memory))
                state = [(h0[i], c0[i]) for i in range(layers)]
                fed, outs = y.new_zeros(b, h), []
                for t in range(y.shape[1]):
                    x = torch.cat([y[:, t], fed], -1)
                    for i, cell_i in enumerate(self.cells):
                        state[i] = cell_i(x, state[i])
                        x = state[i][0]
                    fed = self.attend(x[:, None], keys, memory)[:, 0]
                    outs.append(fed)
                return self.out(torch.stack(outs, 1))

        self.torch, self.dev = torch, dev
        self.model = Model().to(dev)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        arrays = {k: torch.from_numpy(a.astype(np.int64)).to(dev) for k, a in batch_arrays().items()}
        self.src, self.trg = arrays["src"], arrays["trg"]

    def steps(self, n: int) -> None:
        torch = self.torch
        for _ in range(n):
            logits = self.model(self.src, self.trg[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.trg[:, 1:].reshape(-1))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
        if self.dev.type == "cuda":
            torch.cuda.synchronize()


RUNNERS = {"jax": JaxNMT, "torch": TorchNMT}


def bench_training(feed: bool, rounds: int, steps: int, kernel: str = "auto", device: str = "cpu") -> dict:
    argv = [__file__, "--steps", str(steps), "--feed", str(int(feed)), "--kernel", kernel, "--device", device,
            "--worker"]
    tokens = CFG["batch"] * CFG["trg_len"] * steps
    rates, warmup = isolated({name: [*argv, name] for name in RUNNERS}, rounds, tokens, device)
    flops = flops_per_target_token(feed)
    row = {"row": "nmt-luong" + ("-feed" if feed else ""), **CFG, "input_feeding": feed, "device": device,
           "jax_kernel": resolved_kernel("lstm", "float32", kernel, device), "rounds": rounds,
           "steps_per_round": steps, "warmup_seconds": warmup}
    for name, r in rates.items():
        row[name] = {"median_tok_s": round(r["median"]), "min": round(r["min"]), "max": round(r["max"]),
                     "gflop_s": round(r["median"] * flops / 1e9, 1)}
    row["ratio_jax_over_torch"] = round(row["jax"]["median_tok_s"] / row["torch"]["median_tok_s"], 3)
    return row


def python_loop_while(cond, body, state):
    """``lax.while_loop`` as a plain Python loop: jitted body, the stopping rule on the host."""
    import jax

    cond, body = jax.jit(cond), jax.jit(body)
    while bool(cond(state)):
        state = body(state)
    return state


def bench_beam(rounds: int, sentences: int = 32, beam: int = 5, kernel: str = "auto") -> dict:
    import jax

    from pipeline.inference import translator

    model = our_model(feed=False, kernel=kernel)
    arrays = batch_arrays(1)
    src, src_len = arrays["src"][:sentences], arrays["src_len"][:sentences]
    params = model.init(jax.random.key(0), src, src_len, arrays["trg"][:sentences, :-1])["params"]
    jitted = translator.make_translator(model, 2, "beam", beam)
    key = jax.random.key(0)
    looped_fn = jitted.__wrapped__  # the same function, not jitted: ops run eagerly around the loop

    def looped(params, src, src_len, key):
        real = jax.lax.while_loop
        jax.lax.while_loop = python_loop_while
        try:
            return looped_fn(params, src, src_len, key)
        finally:
            jax.lax.while_loop = real

    runs = {"lax_while_loop": lambda: jitted(params, src, src_len, key).block_until_ready(),
            "python_loop": lambda: looped(params, src, src_len, key).block_until_ready()}
    a, b = np.asarray(jitted(params, src, src_len, key)), np.asarray(looped(params, src, src_len, key))
    if not np.array_equal(a, b):
        raise AssertionError("the Python-loop beam search returned different ids")
    steps = int(np.max(np.sum(a != 0, axis=1)))
    rates = interleaved(runs, rounds, sentences)
    row = {"row": f"beam{beam}", "sentences": sentences, "src_len": CFG["src_len"], "beam": beam,
           "longest_output": steps, "vocab": CFG["vocab"], "rounds": rounds}
    for name, r in rates.items():
        row[name] = {"median_sent_s": round(r["median"], 1), "min": round(r["min"], 1), "max": round(r["max"], 1)}
    row["ratio"] = round(row["lax_while_loop"]["median_sent_s"] / row["python_loop"]["median_sent_s"], 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="train steps per round (default: %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/nmt-speed"))
    ap.add_argument("--kernel", choices=["auto", "scan", "onednn", "cudnn"], default="auto",
                    help="our LSTM layers' kernel (see rnn_speed.py)")
    ap.add_argument("--device", choices=sorted(PLATFORMS), default="cpu",
                    help="where both frameworks train (default: %(default)s)")
    ap.add_argument(
        "--rows",
        nargs="+",
        choices=["luong", "luong-feed", "beam"],
        default=["luong", "luong-feed", "beam"],
        help="what to measure (default: all)",
    )
    ap.add_argument("--worker", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--feed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return serve(lambda: RUNNERS[args.worker](bool(args.feed), args.kernel, args.device), args.steps)
    from pipeline import runtime

    runtime.ensure([__file__, *sys.argv[1:]])  # the beam search runs here: same environment as the workers

    peak = matmul_peak()
    rows = []
    for feed in [f for f, name in ((False, "luong"), (True, "luong-feed")) if name in args.rows]:
        row = bench_training(feed, args.rounds, args.steps, args.kernel, args.device)
        for name in ("jax", "torch"):
            row[name]["pct_of_peak"] = round(100 * row[name]["gflop_s"] / peak, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    beam = bench_beam(args.rounds, kernel=args.kernel) if "beam" in args.rows else None
    if beam:
        print(json.dumps(beam), flush=True)
    facts, header = machine_header(peak)
    record = {"machine": facts, "matmul_peak_gflop_s": round(peak, 1), "training": rows, "beam_search": beam}
    lines = [header, "",
             "| row | rnnpipe kernel | rnnpipe JAX tgt tok/s (min-max) | PyTorch tgt tok/s (min-max) | JAX / PyTorch "
             "| JAX GFLOP/s (% peak) | PyTorch GFLOP/s (% peak) |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        j, t = r["jax"], r["torch"]
        lines.append(f"| {r['row']} | {r['jax_kernel']} | {j['median_tok_s']:,} ({j['min']:,}-{j['max']:,}) | "
                     f"{t['median_tok_s']:,} ({t['min']:,}-{t['max']:,}) | {r['ratio_jax_over_torch']:.2f}x | "
                     f"{j['gflop_s']} ({j['pct_of_peak']}%) | {t['gflop_s']} ({t['pct_of_peak']}%) |")
    if not beam:
        return write_results(args.out, record, lines)
    j, p = beam["lax_while_loop"], beam["python_loop"]
    lines += ["", f"Beam search, beam {beam['beam']}, {beam['sentences']} sources of {beam['src_len']} tokens, "
              f"outputs up to {beam['longest_output']} tokens: one jitted `lax.while_loop` "
              f"{j['median_sent_s']} sentences/s ({j['min']}-{j['max']}), a Python step loop "
              f"{p['median_sent_s']} ({p['min']}-{p['max']}): {beam['ratio']}x."]
    write_results(args.out, record, lines)


if __name__ == "__main__":
    main()
