"""Our fused LSTM weights and cuDNN's packed ones: the same outputs and gradients, on the CPU.

cuDNN itself needs a GPU; ``jax.experimental.rnn.lstm_ref`` is its reference
implementation (the layout and arithmetic the cuDNN call follows), and runs anywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn as jrnn

from pipeline.models import cudnn
from pipeline.models.rnn import StackedRNN

BATCH, TIME, IN, HIDDEN = 3, 7, 5, 8


def reference(weights, x, h0, c0, layers, bidirectional):
    w_ih, w_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(weights, IN, HIDDEN, layers, bidirectional)
    lengths = jnp.full((x.shape[0],), x.shape[1], jnp.int32)
    return jrnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, IN, HIDDEN, layers, 0.0, bidirectional)


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, False), (2, True)])
def test_converted_weights_give_the_same_outputs_and_gradients(layers, bidirectional):
    model = StackedRNN("lstm", HIDDEN, layers, bidirectional=bidirectional, kernel="scan")
    kx, kp, kc, kr = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (BATCH, TIME, IN))
    params = model.init(kp, x)["params"]
    directions = 2 if bidirectional else 1
    # a non-zero initial state, so that the carry's layout is checked too
    state = jax.random.normal(kc, (2, layers * directions, BATCH, HIDDEN))
    ours_carries = []
    for i in range(layers):
        pairs = [(state[1, i * directions + d], state[0, i * directions + d]) for d in range(directions)]
        ours_carries.append(tuple(pairs) if bidirectional else pairs[0])
    h0, c0 = cudnn.carries(ours_carries, bidirectional)
    np.testing.assert_array_equal(h0, state[0])
    np.testing.assert_array_equal(c0, state[1])
    weights = cudnn.to_cudnn(params, layers, bidirectional)
    assert weights.shape == (jrnn.get_num_params_in_lstm(IN, HIDDEN, layers, bidirectional),)

    carries_out, ys = model.apply({"params": params}, x, carries=ours_carries)
    y_ref, h_n, c_n = reference(weights, x, h0, c0, layers, bidirectional)
    np.testing.assert_allclose(ys, y_ref, rtol=1e-5, atol=1e-5)
    h_ours, c_ours = cudnn.carries(carries_out, bidirectional)
    np.testing.assert_allclose(h_ours, h_n, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_ours, c_n, rtol=1e-5, atol=1e-5)

    probe = jax.random.normal(kr, ys.shape)  # a random linear loss of the outputs

    def ours(p):
        return jnp.sum(model.apply({"params": p}, x, carries=ours_carries)[1] * probe)

    def theirs(p):  # through the conversion: the packed vector's gradient reaches our parameters
        return jnp.sum(reference(cudnn.to_cudnn(p, layers, bidirectional), x, h0, c0, layers, bidirectional)[0]
                       * probe)

    g_ours, g_theirs = jax.grad(ours)(params), jax.grad(theirs)(params)
    for a, b in zip(jax.tree_util.tree_leaves(g_ours), jax.tree_util.tree_leaves(g_theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layers, bidirectional", [(1, False), (3, True)])
def test_the_conversion_round_trips_exactly(layers, bidirectional):
    model = StackedRNN("lstm", HIDDEN, layers, bidirectional=bidirectional, kernel="scan")
    params = model.init(jax.random.key(1), jnp.zeros((1, 2, IN)))["params"]
    back = cudnn.from_cudnn(cudnn.to_cudnn(params, layers, bidirectional), IN, HIDDEN, layers, bidirectional)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(jax.tree_util.tree_map(
        lambda a: a, dict(params)))
    for a, b in zip(jax.tree_util.tree_leaves(dict(params)), jax.tree_util.tree_leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_vector_of_the_wrong_size_is_named():
    size = jrnn.get_num_params_in_lstm(IN, HIDDEN, 2, False)  # cuDNN's own count: 1056
    with pytest.raises(ValueError, match=rf"2 layer\(s\), input 5, hidden 8 has {size} weights, not \(7,\)"):
        cudnn.from_cudnn(jnp.zeros(7), IN, HIDDEN, 2, False)


# -- the cuDNN path of the models, run on the CPU through cuDNN's reference --------------


def reference_lstm(x, h0, c0, weights, lengths, input_size, hidden, layers, dropout, bidirectional, precision=None):
    """``jax.experimental.rnn.lstm``'s signature on ``lstm_ref``: what ``cudnn.LSTM`` is on a GPU."""
    w_ih, w_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(weights, input_size, hidden, layers, bidirectional)
    return jrnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, input_size, hidden, layers, dropout,
                         bidirectional)


@pytest.fixture
def cudnn_on_cpu(monkeypatch):
    """The models' cuDNN path, with the reference in place of the GPU call."""
    from pipeline.models import rnn

    monkeypatch.setattr(rnn, "_backend", lambda: "gpu")
    monkeypatch.setattr(cudnn, "LSTM", reference_lstm)


def assert_trees_close(a, b, rtol=1e-4, atol=1e-5):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_stacked_rnn_on_cudnn_equals_the_scan_with_padding_and_an_empty_row(cudnn_on_cpu, bidirectional):
    layers = 2
    scan = StackedRNN("lstm", HIDDEN, layers, bidirectional=bidirectional, kernel="scan")
    fused = StackedRNN("lstm", HIDDEN, layers, bidirectional=bidirectional, kernel="cudnn")
    kx, kp, kc, kr = jax.random.split(jax.random.key(2), 4)
    x = jax.random.normal(kx, (4, TIME, IN))
    mask = jnp.arange(TIME)[None, :] < jnp.array([TIME, 3, 0, 1])[:, None]  # ragged, one row empty
    params = scan.init(kp, x, mask)["params"]
    # one checkpoint, both paths: the cuDNN path declares the same parameter tree
    assert jax.tree_util.tree_structure(fused.init(kp, x, mask)["params"]) == jax.tree_util.tree_structure(params)
    rand = iter(jax.random.split(kc, 4 * layers))
    pair = lambda: (jax.random.normal(next(rand), (4, HIDDEN)), jax.random.normal(next(rand), (4, HIDDEN)))
    carries = [(pair(), pair()) if bidirectional else pair() for _ in range(layers)]

    out_scan = scan.apply({"params": params}, x, mask, carries)
    out_fused = fused.apply({"params": params}, x, mask, carries)
    assert_trees_close(out_fused, out_scan, rtol=1e-5, atol=1e-5)
    # without initial carries, both start from zeros
    assert_trees_close(fused.apply({"params": params}, x, mask), scan.apply({"params": params}, x, mask),
                       rtol=1e-5, atol=1e-5)
    empty = out_fused[0][0][0] if bidirectional else out_fused[0][0]
    first = carries[0][0] if bidirectional else carries[0]
    np.testing.assert_array_equal(empty[1][2], first[1][2])  # the empty row keeps its initial h
    assert not np.asarray(out_fused[1][2]).any()  # and outputs zeros

    probe = jax.random.normal(kr, out_scan[1].shape)

    def loss(model):
        def f(p, x, carries):
            new, ys = model.apply({"params": p}, x, mask, carries)
            return jnp.sum(ys * probe) + sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(new))
        return jax.grad(f, argnums=(0, 1, 2))

    grads_fused = loss(fused)(params, x, carries)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(grads_fused))
    assert_trees_close(grads_fused, loss(scan)(params, x, carries))


@pytest.mark.slow  # a whole translator, op by op; the layers are compared in the fast tier above
def test_nmt_on_cudnn_equals_the_scan(cudnn_on_cpu):
    from pipeline.models.seq2seq import Seq2Seq

    make = lambda kernel: Seq2Seq(src_vocab=11, trg_vocab=13, cell="lstm", embed=6, hidden=HIDDEN, layers=2,
                                  bidirectional=True, attention="general", dropout=0.0, kernel=kernel)
    rng = np.random.default_rng(0)
    src = rng.integers(1, 11, (3, 6)).astype(np.int32)
    src_len = np.array([6, 4, 2], np.int32)
    trg = rng.integers(1, 13, (3, 5)).astype(np.int32)
    params = make("scan").init(jax.random.key(0), src, src_len, trg)["params"]

    def loss(kernel):
        return lambda p: jnp.sum(jax.nn.log_softmax(make(kernel).apply({"params": p}, src, src_len, trg))[..., 1])

    np.testing.assert_allclose(loss("cudnn")(params), loss("scan")(params), rtol=1e-5)
    assert_trees_close(jax.grad(loss("cudnn"))(params), jax.grad(loss("scan"))(params))


def test_which_layers_take_cudnn(monkeypatch):
    from pipeline.models import rnn

    assert not rnn.use_cudnn("auto", "lstm", "float32")  # the CPU: never
    with pytest.raises(ValueError, match="kernel 'cudnn' needs an NVIDIA GPU; JAX is running on 'cpu'"):
        StackedRNN("lstm", HIDDEN, 1, kernel="cudnn").init(jax.random.key(0), jnp.zeros((1, 2, IN)))
    monkeypatch.setattr(rnn, "_backend", lambda: "gpu")
    assert rnn.use_cudnn("cudnn", "lstm", "float32")
    assert not rnn.use_cudnn("auto", "lstm", "float32")  # measured slower than the scan on a GPU
    assert not rnn.use_cudnn("cudnn", "gru", "float32")  # no GRU on cuDNN
    assert not rnn.use_cudnn("scan", "lstm", "float32") and not rnn.use_cudnn("onednn", "lstm", "float32")
    with pytest.raises(ValueError, match="runs in float32"):
        rnn.use_cudnn("cudnn", "lstm", "bfloat16")
    assert not rnn.use_onednn("cudnn", "lstm", False, "float32")
    monkeypatch.setattr(rnn, "_backend", lambda: "tpu")
    assert not rnn.use_cudnn("auto", "lstm", "float32")  # the scan on a TPU
