"""Data parallelism on 4 forced CPU devices: the sharded run follows the single-device run.

The device count is fixed when jax starts, so the comparison runs in a fresh
interpreter with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT

SCRIPT = r"""
import json, jax, numpy as np
from pipeline.data import batches
from pipeline.training import loop, losses, optim, parallel, steps
from pipeline.models.charlm import CharLM
from pipeline.models.rnn import initial_carries

assert len(jax.devices()) == 4, jax.devices()
ids = np.random.default_rng(0).integers(0, 20, 6000).astype(np.int32)
b, t, n_steps = 8, 12, 6

def run(devices):
    model = CharLM(vocab=20, cell="lstm", embed=8, hidden=16, layers=2, dropout=0.2)
    carry = initial_carries("lstm", 2, 16, b)
    tx = optim.make_optimizer(0.01, 1.0)
    state = steps.create_state(model, jax.random.key(0), tx, np.zeros((b, t), np.int32), carry)
    job = loop.Job(state, steps.make_train_step(losses.charlm_loss(model)), batches.stream_windows(ids, b, t),
                   jax.random.key(1), loop.FitOptions(steps=n_steps, log_every=1, batch_size=b), carry=carry)
    state, history = loop.fit(job, devices=devices)
    leaf = jax.tree_util.tree_leaves(state.params)[0]
    return {"loss": [row["loss"] for row in history], "devices": len(leaf.sharding.device_set),
            "params": [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(state.params)[:2]]}

one = run(jax.devices()[:1])
four = run(None)
odd = parallel.mesh_for(6)  # 6 rows do not split over 4 devices
sharded = parallel.shard({"x": np.zeros((8, 3))}, parallel.data_mesh())["x"]
print(json.dumps({"one": one, "four": four, "odd_batch_mesh": odd is not None,
                  "sharded_rows": len(sharded.addressable_shards)}))
"""


@pytest.mark.slow  # a subprocess with 4 forced CPU devices
def test_sharded_training_matches_one_device_for_the_same_global_batch():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    one, four = result["one"], result["four"]
    assert one["devices"] == 1 and four["devices"] == 4  # the state really was replicated over 4
    assert result["sharded_rows"] == 4 and not result["odd_batch_mesh"]
    np.testing.assert_allclose(four["loss"], one["loss"], rtol=2e-5)
    for a, b in zip(four["params"], one["params"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert len(set(one["loss"])) > 1  # training moved: the comparison is not of constants
