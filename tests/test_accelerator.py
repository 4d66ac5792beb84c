"""Checks that need a GPU: run by benchmarks/accelerator_check.sh (``pytest -m accelerator``
with ``JAX_PLATFORMS=cuda``). Everywhere else they are skipped; CI collects them in the
check's dry run. Their CPU twins (the cuDNN path through its reference, bf16, the memory
setting) are in test_cudnn.py, test_rnn.py and test_device.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.accelerator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def gpu():
    import jax

    if jax.default_backend() != "gpu":
        pytest.skip("needs an NVIDIA GPU (JAX_PLATFORMS=cuda): benchmarks/accelerator_check.sh")


def test_the_machine_is_detected_and_jax_uses_it():
    from pipeline import device

    choice = device.choose("auto", device.probe())
    assert choice.platform == "cuda" and choice.extra.startswith("cuda")
    assert device.verify("cuda").startswith("gpu: 1 x ")


def _close(a, b, rtol, atol):
    import jax

    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_cudnn_equals_the_scan_on_the_gpu(bidirectional):
    """Real cuDNN against our scan, same parameters, ragged rows and an empty one, at
    full float32 precision (no TF32) so that the two can be compared tightly."""
    import jax
    import jax.numpy as jnp

    from pipeline.models.rnn import StackedRNN, use_cudnn

    assert use_cudnn("cudnn", "lstm", "float32") and not use_cudnn("auto", "lstm", "float32")
    b, t, d, h = 4, 9, 5, 16
    scan = StackedRNN("lstm", h, 2, bidirectional=bidirectional, kernel="scan")
    fused = StackedRNN("lstm", h, 2, bidirectional=bidirectional, kernel="cudnn")
    x = jax.random.normal(jax.random.key(0), (b, t, d))
    mask = jnp.arange(t)[None, :] < jnp.array([t, 4, 0, 1])[:, None]
    params = scan.init(jax.random.key(1), x, mask)["params"]
    lowered = jax.jit(lambda p: fused.apply({"params": p}, x, mask)).lower(params).as_text()
    assert "cudnn" in lowered.lower()  # the custom call really is there
    probe = jax.random.normal(jax.random.key(2), (b, t, h * (2 if bidirectional else 1)))

    def loss(model):
        return lambda p: jnp.sum(model.apply({"params": p}, x, mask)[1] * probe)

    with jax.default_matmul_precision("highest"):
        _close(fused.apply({"params": params}, x, mask), scan.apply({"params": params}, x, mask), 1e-4, 1e-5)
        grads = jax.grad(loss(fused))(params)
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
        _close(grads, jax.grad(loss(scan))(params), 1e-3, 1e-4)


@pytest.mark.parametrize("feed, precision, kernel", [(False, "float32", "cudnn"), (True, "bfloat16", "auto")])
def test_nmt_trains_on_the_gpu(feed, precision, kernel):
    """A few train steps of the attention NMT on the GPU (cuDNN encoder and decoder, or
    the bf16 input-feeding decoder): finite, and the loss goes down."""
    import jax

    from pipeline.models.seq2seq import Seq2Seq
    from pipeline.training import losses, optim, steps

    model = Seq2Seq(src_vocab=50, trg_vocab=50, cell="lstm", embed=32, hidden=64, layers=2, bidirectional=True,
                    attention="general", dropout=0.0, input_feeding=feed, precision=precision, kernel=kernel)
    rng = np.random.default_rng(0)
    batch = {"src": rng.integers(4, 50, (16, 12)).astype(np.int32), "src_len": np.full((16,), 12, np.int32),
             "trg": rng.integers(4, 50, (16, 11)).astype(np.int32), "trg_len": np.full((16,), 10, np.int32)}
    state = steps.create_state(model, jax.random.key(0), optim.make_optimizer(3e-3, 1.0), batch["src"],
                               batch["src_len"], batch["trg"][:, :-1])
    step = steps.make_train_step(losses.nmt_loss(model))
    seen = []
    for i in range(30):
        state, _, out = step(state, batch, None, jax.random.key(i))
        seen.append(float(out["loss"]))
    assert np.isfinite(seen).all() and seen[-1] < 0.8 * seen[0]


def test_concurrent_runs_share_one_gpu():
    """Three processes with the flows' memory setting each hold 30 % of their allocator's
    limit at the same time: with JAX's default (75 % of the GPU preallocated per process)
    the second could not start."""
    from pipeline import device

    script = textwrap.dedent("""
        import sys, time, jax, jax.numpy as jnp
        total = jax.devices()[0].memory_stats()["bytes_limit"]
        chunk = 1 << 28  # 256 MiB arrays: one array of 30 % would overflow an int32 dimension
        xs = [jnp.ones((chunk // 4,), jnp.float32) for _ in range(int(0.30 * total) // chunk)]
        jax.block_until_ready(xs)
        print("holding", flush=True)
        time.sleep(float(sys.argv[1]))
        print(float(xs[0][0] + xs[-1][-1]))
    """)
    env = device.shared_memory({k: v for k, v in os.environ.items()
                                if k not in (device.PREALLOCATE, device.MEM_FRACTION)})
    env["JAX_PLATFORMS"] = "cuda"
    procs = [subprocess.Popen([sys.executable, "-c", script, "8"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert out.split() == ["holding", "2.0"]
