"""Multi-host training, run for real: two processes on 127.0.0.1 joined by ``jax.distributed``.

Each process is a separate ``python -m pipeline train_charlm lstm`` in its own working
directory (as on two hosts with their own disks), with one CPU device each; the gradient
all-reduce between them goes through JAX's CPU collectives (gloo). The result must equal
the single-process run on the same global batch.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import serialization

from .conftest import merge, tiny_overrides
from .helpers import make_repo

MODEL = "models/charlm/lstm/params.msgpack"
LOSS = "dvclive/charlm-lstm/plots/metrics/train/loss.tsv"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stage(cwd: Path, **env: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    return subprocess.Popen([sys.executable, "-m", "pipeline", "train_charlm", "lstm"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    try:
        out, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    assert proc.returncode == 0, out[-4000:]
    return out


def _params(repo: Path) -> list[np.ndarray]:
    import jax

    return jax.tree_util.tree_leaves(serialization.msgpack_restore((repo / MODEL).read_bytes()))


@pytest.mark.slow  # three training processes
def test_two_processes_train_the_char_lm_like_one_on_the_same_global_batch(tmp_path, real_params_dict):
    params = merge(real_params_dict, tiny_overrides(root=tmp_path / "single"))
    params["charlm"]["model"].update(cells=["lstm"], kernel="scan")  # the same kernel on 1 and 2 devices
    params["charlm"]["train"].update(steps=8, log_every=2, checkpoint_every=4, batch_size=4)
    single = make_repo(tmp_path / "single", params)
    for stage in (["download", "charlm"], ["prepare_charlm"]):
        subprocess.run([sys.executable, "-m", "pipeline", *stage], cwd=single, check=True, capture_output=True)
    hosts = [tmp_path / f"host{i}" for i in range(2)]
    for host in hosts:
        shutil.copytree(single, host)

    one = _stage(single)
    _finish(one)
    cluster = {"RNNPIPE_COORDINATOR": f"127.0.0.1:{_free_port()}", "RNNPIPE_NUM_PROCESSES": "2"}
    procs = [_stage(host, **cluster, RNNPIPE_PROCESS_ID=str(i)) for i, host in enumerate(hosts)]
    outs = [_finish(p) for p in procs]

    for out in outs:
        assert "data parallel over 2 devices" in out  # one device per process, both in one mesh
    # both hosts hold the same model, bit for bit, and saved their own checkpoints
    assert (hosts[0] / MODEL).read_bytes() == (hosts[1] / MODEL).read_bytes()
    for host in hosts:
        assert sorted(p.name for p in host.glob("checkpoints/charlm/train_charlm@lstm/*/*") if p.name.isdigit()) \
            == ["4", "8"]
    # and follow the single-process run: only the all-reduce's summation order differs
    for a, b in zip(_params(hosts[0]), _params(single), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    losses = [np.loadtxt(repo / LOSS, skiprows=1)[:, 1] for repo in (single, hosts[0])]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert len(set(losses[0])) > 1  # training moved: the comparison is not of constants
