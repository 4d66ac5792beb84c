"""oneDNN's fused LSTM (pipeline/kernels) against the scan core: same parameters, same
outputs and gradients; where it is used, and what a missing piece says."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipeline.kernels import onednn
from pipeline.models.charlm import CharLM
from pipeline.models.rnn import StackedRNN, initial_carries

# Only the tests that build, load or run the kernel skip where it cannot be built (no
# compiler, say); those that check what a missing piece says run everywhere.
needs_kernel = pytest.mark.skipif(onednn.unavailable() is not None, reason=f"oneDNN kernel: {onednn.unavailable()}")

B, D, H = 3, 5, 6


def _stack(kernel, bidirectional=False):
    return StackedRNN("lstm", H, layers=2, bidirectional=bidirectional, kernel=kernel)


@needs_kernel
@pytest.mark.parametrize("time,bidirectional", [(7, False), (1, False), (9, True)])
def test_onednn_layers_equal_the_scan_in_outputs_and_every_gradient(time, bidirectional):
    """Two stacked LSTM layers (both directions when bidirectional), from random carries:
    outputs, final carries, and the gradients of the weights, the inputs and the initial
    carries agree with the scan to float32 rounding, under jit; the same parameters serve
    both kernels. Run twice, oneDNN gives identical bits (resume relies on that)."""
    x = jax.random.normal(jax.random.key(1), (B, time, D))
    scan, fused = _stack("scan", bidirectional), _stack("onednn", bidirectional)
    params = scan.init(jax.random.key(0), x)["params"]
    shape = jax.eval_shape(lambda: scan.apply({"params": params}, x)[0])
    keys = iter(jax.random.split(jax.random.key(2), 16))
    carries = jax.tree_util.tree_map(lambda s: jax.random.normal(next(keys), s.shape) * 0.5, shape)

    def loss(model, params, x, carries):
        carries, ys = model.apply({"params": params}, x, None, carries)
        return jnp.sum(jnp.sin(3 * ys)) + sum(jnp.sum(jnp.cos(2 * c)) for c in jax.tree_util.tree_leaves(carries))

    def run(model):
        return jax.jit(jax.value_and_grad(lambda *a: loss(model, *a), argnums=(0, 1, 2)))(params, x, carries)

    (want, want_g), (got, got_g) = run(scan), run(fused)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got_g), jax.tree_util.tree_leaves(want_g), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=jax.tree_util.keystr(path))
    again, again_g = run(fused)
    assert float(again) == float(got)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(again_g), jax.tree_util.tree_leaves(got_g), strict=True)
    )


def _custom_calls(model, *args) -> str:
    return str(
        jax.make_jaxpr(lambda p: model.apply({"params": p}, *args))(model.init(jax.random.key(0), *args)["params"])
    )


@needs_kernel
@pytest.mark.parametrize("kernel,cell,padded,precision,expected", [
    ("auto", "lstm", False, "float32", True),
    ("onednn", "lstm", False, "float32", True),
    ("scan", "lstm", False, "float32", False),
    ("auto", "gru", False, "float32", False),
    ("auto", "lstm", True, "float32", False),  # padding needs the masked scan
    ("auto", "lstm", False, "bfloat16", False),
])
def test_which_layers_run_on_onednn(kernel, cell, padded, precision, expected):
    x = jnp.ones((B, 4, D))
    mask = jnp.arange(4)[None, :] < jnp.array([4, 2, 1])[:, None] if padded else None
    model = StackedRNN(cell, H, layers=1, precision=precision, kernel=kernel)
    assert ("rnnpipe_lstm_onednn_fwd" in _custom_calls(model, x, mask)) == expected


@needs_kernel
def test_a_char_lm_trained_on_one_kernel_runs_on_the_other():
    """The parameter tree is the same, so a checkpoint moves between kernels."""
    tokens = jax.random.randint(jax.random.key(3), (2, 12), 0, 20)
    carries = initial_carries("lstm", 2, 16, 2)
    models = {k: CharLM(vocab=20, cell="lstm", embed=8, hidden=16, layers=2, dropout=0.0, kernel=k)
              for k in ("scan", "onednn")}
    params = models["scan"].init(jax.random.key(0), tokens, carries)["params"]
    (_, want), (_, got) = (models[k].apply({"params": params}, tokens, carries) for k in ("scan", "onednn"))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_missing_pieces_are_named(monkeypatch, tmp_path):
    """Each missing piece of the build says what is missing and how to get it."""
    monkeypatch.setattr(onednn, "_prefix", lambda: tmp_path)
    with pytest.raises(onednn.Unavailable, match=r"libdnnl.so.3 is missing\): pip install onednn-cpu-gomp==2023.2.0"):
        onednn.library_path()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libdnnl.so.3").touch()
    with pytest.raises(onednn.Unavailable, match=r"oneapi/dnnl/dnnl.hpp is missing\): pip install .*onednn-devel"):
        onednn.library_path()


def test_a_failing_compiler_is_reported_with_its_error(monkeypatch, tmp_path):
    cxx = tmp_path / "cxx"
    cxx.write_text("#!/bin/sh\necho 'fatal error: boom' >&2\nexit 1\n")
    cxx.chmod(0o755)
    cache = tmp_path / "cache"
    monkeypatch.setenv("RNNPIPE_KERNEL_CACHE", str(cache))
    monkeypatch.setenv("CXX", str(cxx))
    with pytest.raises(onednn.Unavailable, match=r"compiling .*lstm_onednn.cc failed:\nfatal error: boom"):
        onednn.build()
    assert list(cache.iterdir()) == []  # no half-written library left in the cache


@needs_kernel
def test_the_kernel_is_built_into_the_cache_once(monkeypatch, tmp_path):
    """A real compile into an empty cache, without a compiler warning (-Wall -Wextra), then
    a hit that compiles nothing."""
    monkeypatch.setenv("RNNPIPE_KERNEL_CACHE", str(tmp_path))
    assert "-w" not in onednn.FLAGS and "-Wall" in onednn.FLAGS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # build() warns with whatever the compiler said
        path = onednn.build()
    assert path.parent == tmp_path and path.stat().st_size > 0
    built = path.stat().st_mtime_ns
    assert onednn.build() == path and path.stat().st_mtime_ns == built


@needs_kernel
def test_two_clones_share_one_build(monkeypatch, tmp_path):
    """The build's key is the source's bytes and the command, not where the source lies, so
    a second clone finds the first one's library (and its compilation-cache folder)."""
    here = onednn.library_path()
    elsewhere = tmp_path / "clone" / onednn.SOURCE.name
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(onednn.SOURCE.read_bytes())
    monkeypatch.setattr(onednn, "SOURCE", elsewhere)
    assert onednn.library_path() == here
    elsewhere.write_bytes(onednn.SOURCE.read_bytes() + b"// changed\n")
    assert onednn.library_path() != here  # a changed source is a new build


def _call(name, outputs, *args):
    onednn._load()  # registers the targets
    return jax.ffi.ffi_call(name, outputs)(*args, reverse=False)


@needs_kernel
def test_a_buffer_of_the_wrong_shape_is_an_invalid_argument():
    """The C++ side checks every buffer against x and h0 before oneDNN reads it."""
    t, b, i, h = 4, 2, 3, 5
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    nbytes = onednn._load().rnnpipe_lstm_workspace_bytes(t, b, i, h, 0)
    outputs = (f32(t, b, h), f32(b, h), f32(b, h), jax.ShapeDtypeStruct((nbytes,), jnp.uint8))
    x, h0, wi, wh, bias = (jnp.ones(s) for s in ((t, b, i), (b, h), (i, 4 * h), (h, 4 * h), (4 * h,)))
    ys, *_ = _call(onednn._FWD, outputs, x, h0, h0, wi, wh, bias)  # the right shapes run
    assert ys.shape == (t, b, h) and np.all(np.isfinite(ys))
    with pytest.raises(Exception, match=r"INVALID_ARGUMENT: oneDNN LSTM: wh has shape \[3, 20\], expected \[5, 20\]"):
        _call(onednn._FWD, outputs, x, h0, h0, wi, wi, bias)  # the input weights where wh goes
    with pytest.raises(Exception, match=r"INVALID_ARGUMENT: oneDNN LSTM: workspace has \d+ bytes, expected"):
        _call(onednn._FWD, (*outputs[:3], jax.ShapeDtypeStruct((nbytes + 1,), jnp.uint8)), x, h0, h0, wi, wh, bias)
    with pytest.raises(Exception, match=r"INVALID_ARGUMENT: oneDNN LSTM: x must be \[T, B, I\]"):
        _call(onednn._FWD, outputs, x[0], h0, h0, wi, wh, bias)


@needs_kernel
def test_dev_says_in_one_line_why_the_kernel_cannot_load(tmp_path):
    """What ./dev runs before every CPU command: silent when the kernel loads, else one line
    with the reason (here the compiler's first error line, not its whole output)."""
    cxx = tmp_path / "cxx"
    cxx.write_text("#!/bin/sh\necho 'In file included from x.h:1,' >&2\n"
                   "echo 'lstm_onednn.cc:12:3: error: boom' >&2\necho '   12 | oops' >&2\nexit 1\n")
    cxx.chmod(0o755)
    command = [sys.executable, "-m", "pipeline.kernels.onednn", "--check"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    fine = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert (fine.returncode, fine.stdout, fine.stderr) == (0, "", "")
    env.update(RNNPIPE_KERNEL_CACHE=str(tmp_path / "cache"), CXX=str(cxx))
    broken = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 0 and broken.stdout == ""
    (line,) = broken.stderr.splitlines()
    assert "oneDNN LSTM kernel is unavailable (compiling" in line
    assert "lstm_onednn.cc:12:3: error: boom" in line and "run on the scan" in line
