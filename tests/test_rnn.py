"""The recurrent core equals a hand-unrolled loop and the reference flax.linen cells."""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipeline.models.rnn import GATES, STEPS, RNNLayer, StackedRNN, initial_carries, scan_layer, zero_carry

B, T, D, H = 3, 7, 5, 6


def random_layer(cell, key):
    k = jax.random.split(key, 4)
    g = GATES[cell] * H
    return {
        "wi": jax.random.normal(k[0], (D, g)) * 0.4,
        "wh": jax.random.normal(k[1], (H, g)) * 0.4,
        "bi": jax.random.normal(k[2], (g,)) * 0.1,
        "bh": jax.random.normal(k[3], (g,)) * 0.1,
    }


def unrolled(cell, p, x, mask, carry, reverse=False):
    """A plain Python loop over time: the reference the scan must match."""
    ys = [None] * x.shape[1]
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    for t in order:
        new, y = STEPS[cell](p["wh"], p["bh"], carry, x[:, t] @ p["wi"] + p["bi"])
        m = mask[:, t][:, None]
        carry = jax.tree_util.tree_map(lambda a, b, m=m: jnp.where(m, a, b), new, carry)
        ys[t] = jnp.where(m, y, 0.0)
    return carry, jnp.stack(ys, axis=1)


@pytest.fixture
def inputs():
    x = jax.random.normal(jax.random.key(1), (B, T, D))
    lengths = jnp.array([T, 4, 1])
    mask = jnp.arange(T)[None, :] < lengths[:, None]
    return x, mask, lengths


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_equals_unrolled_loop(cell, reverse, inputs):
    x, mask, _ = inputs
    p = random_layer(cell, jax.random.key(0))
    carry0 = zero_carry(cell, B, H)
    got_c, got_y = scan_layer(cell, p["wh"], p["bh"], carry0, x @ p["wi"] + p["bi"], mask, reverse)
    want_c, want_y = unrolled(cell, p, x, mask, carry0, reverse)
    np.testing.assert_allclose(got_y, want_y, atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(got_c), jax.tree_util.tree_leaves(want_c), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_scan_gradient_equals_unrolled_gradient(cell, inputs):
    x, mask, _ = inputs
    p = random_layer(cell, jax.random.key(2))

    def loss(p, fn):
        carry, ys = fn(p)
        # sin(ys + 1): a gradient at padded positions too, which must not reach anything
        return jnp.sum(jnp.sin(ys + 1.0)) + sum(jnp.sum(c) for c in jax.tree_util.tree_leaves(carry))

    scanned = lambda p: scan_layer(cell, p["wh"], p["bh"], zero_carry(cell, B, H), x @ p["wi"] + p["bi"], mask)
    loop = lambda p: unrolled(cell, p, x, mask, zero_carry(cell, B, H))
    g1, g2 = jax.grad(loss)(p, scanned), jax.grad(loss)(p, loop)
    for k in p:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-4, atol=1e-5)


def to_ours(cell, ref):
    """Map flax.linen LSTMCell/GRUCell parameters onto our fused layout."""
    names = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}[cell]
    cat = lambda parts: jnp.concatenate(parts, axis=-1)
    zeros = jnp.zeros((H,))
    wi = cat([ref["i" + n]["kernel"] for n in names])
    wh = cat([ref["h" + n]["kernel"] for n in names])
    bi = cat([ref["i" + n].get("bias", zeros) for n in names])
    bh = cat([ref["h" + n].get("bias", zeros) for n in names])
    return {"wi": wi, "wh": wh, "bi": bi, "bh": bh}


@pytest.mark.parametrize("cell,kernel", [("lstm", "scan"), ("lstm", "onednn"), ("gru", "scan")])
def test_layer_matches_flax_reference_cell(cell, kernel, inputs):
    x, _, _ = inputs
    ref_cell = nn.LSTMCell(H) if cell == "lstm" else nn.GRUCell(H)
    carry0 = ref_cell.initialize_carry(jax.random.key(0), (B, D))
    ref_params = ref_cell.init(jax.random.key(3), carry0, x[:, 0])["params"]
    ref_params = jax.tree_util.tree_map(lambda a: a + 0.05, ref_params)  # non-zero biases
    carry, ref_ys = carry0, []
    for t in range(T):
        carry, y = ref_cell.apply({"params": ref_params}, carry, x[:, t])
        ref_ys.append(y)
    ours = RNNLayer(cell, H, kernel=kernel)
    got_carry, got_ys = ours.apply({"params": to_ours(cell, ref_params)}, x)
    np.testing.assert_allclose(got_ys, jnp.stack(ref_ys, 1), atol=1e-5)
    np.testing.assert_allclose(
        jax.tree_util.tree_leaves(got_carry)[-1], jax.tree_util.tree_leaves(carry)[-1], atol=1e-5
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_never_reaches_the_state(cell, inputs):
    """A row's final carry equals running its unpadded prefix alone, both directions."""
    x, mask, lengths = inputs
    layer = RNNLayer(cell, H)
    params = layer.init(jax.random.key(0), x)["params"]
    carry, ys = layer.apply({"params": params}, x, mask)
    rev = RNNLayer(cell, H, reverse=True)
    rcarry, rys = rev.apply({"params": params}, x, mask)
    for row, n in enumerate(lengths.tolist()):
        alone_c, alone_y = layer.apply({"params": params}, x[row : row + 1, :n])
        np.testing.assert_allclose(ys[row, :n], alone_y[0], atol=1e-5)
        assert np.all(ys[row, n:] == 0.0)
        np.testing.assert_allclose(
            jax.tree_util.tree_leaves(carry)[-1][row], jax.tree_util.tree_leaves(alone_c)[-1][0], atol=1e-5
        )
        ralone_c, ralone_y = rev.apply({"params": params}, x[row : row + 1, :n])
        np.testing.assert_allclose(rys[row, :n], ralone_y[0], atol=1e-5)


def test_stacked_bidirectional_shapes_and_carries(inputs):
    x, mask, _ = inputs
    model = StackedRNN("lstm", H, layers=2, dropout=0.0, bidirectional=True)
    variables = model.init(jax.random.key(0), x, mask)
    carries, ys = model.apply(variables, x, mask)
    assert ys.shape == (B, T, 2 * H)
    assert len(carries) == 2 and all(len(c) == 2 for c in carries)
    assert set(variables["params"]) == {"layer0", "layer0_reverse", "layer1", "layer1_reverse"}
    assert variables["params"]["layer1"]["wi"].shape == (2 * H, 4 * H)


def to_flax(cell, p):
    """Our fused layer parameters as flax.linen LSTMCell/GRUCell parameters.

    A differentiable map, so ``jax.grad`` through it gives the reference gradient in our
    layout. LSTMCell has one bias per gate (on the hidden side): it gets ``bi + bh``.
    GRUCell has input biases for r, z, n and a hidden bias for n only.
    """
    names = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}[cell]
    split = lambda a: jnp.split(a, len(names), axis=-1)
    wi, wh, bi, bh = split(p["wi"]), split(p["wh"]), split(p["bi"]), split(p["bh"])
    out = {}
    for k, n in enumerate(names):
        out["i" + n] = {"kernel": wi[k]}
        out["h" + n] = {"kernel": wh[k]}
        if cell == "lstm":
            out["h" + n]["bias"] = bi[k] + bh[k]
        elif n == "n":
            out["in"]["bias"], out["hn"]["bias"] = bi[k], bh[k]
        else:
            out["i" + n]["bias"] = bi[k] + bh[k]
    return out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_core_forward_and_gradient_equal_flax_cells(cell, reverse, padded, inputs):
    """The fast core (custom VJP, time-major, tanh-folded gates) against ``nn.RNN`` over
    the reference flax.linen cells: outputs, final carries, and the gradients with
    respect to every weight, the inputs and the initial carry, padded or not, both
    directions, under jit."""
    x, mask, lengths = inputs
    if not padded:
        mask, lengths = jnp.ones_like(mask), jnp.full_like(lengths, T)
    p = random_layer(cell, jax.random.key(4))
    carry0 = jax.tree_util.tree_map(
        lambda z: jax.random.normal(jax.random.key(5), z.shape) * 0.5, zero_carry(cell, B, H))
    ref_cell = nn.LSTMCell(H) if cell == "lstm" else nn.GRUCell(H)
    ref_rnn = nn.RNN(ref_cell, return_carry=True, reverse=reverse, keep_order=True)
    if cell == "lstm":
        carry0 = tuple(carry0)  # flax's LSTM carry is (c, h), as ours

    def ours(p, x, carry):
        layer = RNNLayer(cell, H, reverse=reverse, kernel="scan")  # oneDNN: tests/test_kernels.py
        return layer.apply({"params": p}, x, mask if padded else None, carry)

    def ref(p, x, carry):
        return ref_rnn.apply({"params": {"cell": to_flax(cell, p)}}, x, initial_carry=carry,
                             seq_lengths=lengths if padded else None)

    def loss(fn, p, x, carry):
        carry, ys = fn(p, x, carry)
        ys = jnp.where(mask[:, :, None], ys, 0.0)  # flax leaves padded outputs unspecified
        return jnp.sum(jnp.sin(3 * ys)) + sum(jnp.sum(jnp.cos(2 * c)) for c in jax.tree_util.tree_leaves(carry))

    (got_c, got_y), (want_c, want_y) = jax.jit(ours)(p, x, carry0), ref(p, x, carry0)
    np.testing.assert_allclose(jnp.where(mask[:, :, None], got_y, 0.0),
                               jnp.where(mask[:, :, None], want_y, 0.0), atol=2e-5)
    if padded:
        assert np.all(np.asarray(got_y)[~np.asarray(mask)] == 0.0)
    for a, b in zip(jax.tree_util.tree_leaves(got_c), jax.tree_util.tree_leaves(want_c), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
    grads = jax.jit(jax.grad(partial(loss, ours), argnums=(0, 1, 2)))(p, x, carry0)
    want = jax.grad(partial(loss, ref), argnums=(0, 1, 2))(p, x, carry0)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bfloat16_runs_bf16_matmuls_with_float32_carries(cell, inputs):
    """``precision="bfloat16"``: the recurrent matmuls really take bf16 operands, the
    carries, outputs and gradients stay float32, and both stay close to float32."""
    x, mask, _ = inputs
    f32, bf16 = (StackedRNN(cell, H, layers=2, bidirectional=True, precision=p) for p in ("float32", "bfloat16"))
    params = f32.init(jax.random.key(0), x, mask)["params"]

    def loss(model, params):
        carries, ys = model.apply({"params": params}, x, mask)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c) for c in jax.tree_util.tree_leaves(carries)), (carries, ys)

    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: loss(bf16, p)[0]))(params))
    assert "bf16" in jaxpr and "preferred_element_type=float32" in jaxpr
    assert "bf16" not in str(jax.make_jaxpr(jax.grad(lambda p: loss(f32, p)[0]))(params))
    (want, (want_c, want_y)), want_g = jax.value_and_grad(partial(loss, f32), has_aux=True)(params)
    (got, (got_c, got_y)), got_g = jax.jit(jax.value_and_grad(partial(loss, bf16), has_aux=True))(params)
    assert got_y.dtype == jnp.float32
    assert all(c.dtype == jnp.float32 for c in jax.tree_util.tree_leaves(got_c))
    np.testing.assert_allclose(got_y, want_y, atol=3e-2)
    for a, b in zip(jax.tree_util.tree_leaves(got_g), jax.tree_util.tree_leaves(want_g), strict=True):
        assert a.dtype == jnp.float32 and np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, atol=0.1 * float(jnp.max(jnp.abs(b))) + 1e-3)


@pytest.mark.slow  # a whole translator in both precisions; the layers are checked in the fast tier above
def test_bfloat16_reaches_the_input_feeding_decoder():
    """The IWSLT profile's decoder steps through time itself (input feeding): with
    ``precision="bfloat16"`` its per-step recurrent and input matmuls take bf16 operands
    too, and its logits and gradients stay float32 and close to the float32 model's."""
    from pipeline.models.seq2seq import Seq2Seq

    make = lambda p: Seq2Seq(src_vocab=11, trg_vocab=13, cell="lstm", embed=6, hidden=H, layers=2,
                             bidirectional=True, attention="general", dropout=0.0, input_feeding=True, precision=p)
    rng = np.random.default_rng(0)
    src, src_len = rng.integers(1, 11, (3, 6)).astype(np.int32), np.array([6, 4, 2], np.int32)
    trg = rng.integers(1, 13, (3, 5)).astype(np.int32)
    params = make("float32").init(jax.random.key(0), src, src_len, trg)["params"]

    def loss(p, precision):
        return jnp.sum(jax.nn.log_softmax(make(precision).apply({"params": p}, src, src_len, trg))[..., 1])

    decoder_only = lambda precision: (lambda p: make(precision).apply(
        {"params": p}, jnp.zeros((3, 5, H)), {"memory": jnp.zeros((3, 6, 2 * H)), "keys": jnp.zeros((3, 6, H)),
                                              "mask": jnp.ones((3, 6), bool)},
        ([(jnp.zeros((3, H)),) * 2] * 2, jnp.zeros((3, H))), method=lambda m, y, e, s: m._fed(
            [layer() for layer in m.decoder], y, e, s, False)))
    jaxpr = str(jax.make_jaxpr(decoder_only("bfloat16"))(params))
    assert "bf16" in jaxpr and "preferred_element_type=float32" in jaxpr
    assert "bf16" not in str(jax.make_jaxpr(decoder_only("float32"))(params))
    want, want_g = jax.value_and_grad(loss)(params, "float32")
    got, got_g = jax.value_and_grad(loss)(params, "bfloat16")
    assert got.dtype == jnp.float32 and got != want
    np.testing.assert_allclose(got, want, rtol=2e-2)
    for a, b in zip(jax.tree_util.tree_leaves(got_g), jax.tree_util.tree_leaves(want_g), strict=True):
        assert a.dtype == jnp.float32 and np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, atol=0.1 * float(jnp.max(jnp.abs(b))) + 1e-3)


@pytest.mark.parametrize("cell,kernel,expected", [("lstm", "scan", "scan"), ("gru", "auto", "scan"),
                                                  ("lstm", "auto", "onednn")])
def test_the_recurrent_kernel_is_read_off_the_traced_model(cell, kernel, expected):
    from pipeline.kernels import onednn
    from pipeline.models.charlm import CharLM
    from pipeline.training.steps import recurrent_kernel

    if expected == "onednn" and onednn.unavailable():
        expected = "scan"  # auto falls back, and the record says so
    model = CharLM(7, cell, embed=4, hidden=6, layers=2, dropout=0.0, kernel=kernel)
    args = (jnp.zeros((2, 3), jnp.int32), initial_carries(cell, 2, 6, 2))
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), *args))["params"]
    assert recurrent_kernel(model, params, *args) == expected
    assert recurrent_kernel(nn.Dense(3), {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(3)},
                            jnp.zeros((1, 2))) == "none"
