"""One-step smoke tests that catch real bugs in each model and its loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipeline.models.charlm import CharLM
from pipeline.models.forecaster import Forecaster
from pipeline.models.rnn import initial_carries
from pipeline.models.seq2seq import Seq2Seq
from pipeline.training import losses, optim, steps

CELLS = ["lstm", "gru"]


def nmt_setup(cell, attention="general", dropout=0.0, **options):
    options.setdefault("bidirectional", attention != "dot")  # dot needs memory as wide as the decoder
    attention = options.pop("attention", attention)
    model = Seq2Seq(11, 13, cell, embed=8, hidden=12, layers=2, attention=attention, dropout=dropout,
                    **options)
    rng = np.random.default_rng(0)
    batch = {
        "src": jnp.asarray(rng.integers(4, 11, (4, 6)), jnp.int32),
        "trg": jnp.asarray(rng.integers(4, 13, (4, 7)), jnp.int32),
        "src_len": jnp.array([6, 4, 2, 1], jnp.int32),
        "trg_len": jnp.array([6, 3, 5, 1], jnp.int32),
    }
    state = steps.create_state(model, jax.random.key(0), optim.make_optimizer(1e-2, 1.0),
                               batch["src"], batch["src_len"], batch["trg"][:, :-1])
    return model, state, batch


def charlm_setup(cell, dropout=0.0, input="embedding"):
    model = CharLM(9, cell, embed=6, hidden=10, layers=2, dropout=dropout, input=input)
    rng = np.random.default_rng(0)
    batch = {"inputs": jnp.asarray(rng.integers(0, 9, (3, 8)), jnp.int32),
             "targets": jnp.asarray(rng.integers(0, 9, (3, 8)), jnp.int32),
             "reset": np.bool_(True)}
    carry = initial_carries(cell, 2, 10, 3)
    state = steps.create_state(model, jax.random.key(0), optim.make_optimizer(1e-2, 1.0),
                               batch["inputs"], carry)
    return model, state, batch, carry


def forecast_setup(cell):
    model = Forecaster(cell, hidden=8, layers=2, dropout=0.0, output_len=5)
    rng = np.random.default_rng(0)
    batch = {"inputs": jnp.asarray(rng.normal(size=(6, 9, 2)), jnp.float32),
             "targets": jnp.asarray(rng.normal(size=(6, 5, 1)), jnp.float32)}
    state = steps.create_state(model, jax.random.key(0), optim.make_optimizer(1e-2, 1.0),
                               batch["inputs"])
    return model, state, batch


def assert_every_leaf_changed(before, after):
    flat_before = jax.tree_util.tree_leaves_with_path(before)
    flat_after = jax.tree_util.tree_leaves(after)
    unchanged = [jax.tree_util.keystr(path) for (path, a), b in zip(flat_before, flat_after, strict=True)
                 if np.array_equal(np.asarray(a), np.asarray(b))]
    assert not unchanged, f"parameters not updated by one train step: {unchanged}"


def slow_but(cases, fast):
    """A matrix whose cases at the indices ``fast`` run in the fast tier and the rest in the
    slow one: the fast tier still meets every option once, the full tier every combination."""
    return [pytest.param(*case, marks=() if i in fast else (pytest.mark.slow,)) for i, case in enumerate(cases)]


@pytest.mark.parametrize("cell,attention", slow_but(  # each attention once, on alternating cells
    [(cell, attention) for attention in ("none", "dot", "general", "scaled", "bahdanau") for cell in CELLS],
    fast={0, 3, 4, 7, 8}))
def test_nmt_padding_does_not_change_the_loss(cell, attention):
    model, state, batch = nmt_setup(cell, attention)
    loss_fn = jax.jit(losses.nmt_loss(model), static_argnums=4)
    base, _ = loss_fn(state.params, batch, None, jax.random.key(0), False)
    noisy = dict(batch)
    src_pad = jnp.arange(6)[None, :] >= batch["src_len"][:, None]
    trg_pad = jnp.arange(7)[None, :] > batch["trg_len"][:, None]
    noisy["src"] = jnp.where(src_pad, 9, batch["src"])
    noisy["trg"] = jnp.where(trg_pad, 12, batch["trg"])
    assert not np.array_equal(noisy["src"], batch["src"])
    changed, _ = loss_fn(state.params, noisy, None, jax.random.key(0), False)
    np.testing.assert_allclose(base, changed, rtol=1e-6)
    # ...while a real (unpadded) token does change it.
    real = dict(batch, trg=batch["trg"].at[0, 1].set(5 if batch["trg"][0, 1] != 5 else 6))
    moved, _ = loss_fn(state.params, real, None, jax.random.key(0), False)
    assert abs(float(moved) - float(base)) > 1e-6


@pytest.mark.parametrize("cell", CELLS)
def test_one_nmt_step_changes_every_parameter(cell):
    model, state, batch = nmt_setup(cell, dropout=0.1)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    step = steps.make_train_step(losses.nmt_loss(model))
    state, _, loss = step(state, batch, None, jax.random.key(1))
    assert np.isfinite(float(loss["loss"]))
    assert_every_leaf_changed(before, state.params)


@pytest.mark.parametrize("cell", CELLS)
def test_one_charlm_step_changes_every_parameter(cell):
    model, state, batch, carry = charlm_setup(cell, dropout=0.1)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    step = steps.make_train_step(losses.charlm_loss(model))
    state, carry, _ = step(state, batch, carry, jax.random.key(1))
    assert_every_leaf_changed(before, state.params)
    assert any(np.abs(np.asarray(c)).sum() > 0 for c in jax.tree_util.tree_leaves(carry))


@pytest.mark.parametrize("cell", CELLS)
def test_one_forecast_step_changes_every_parameter(cell):
    model, state, batch = forecast_setup(cell)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    step = steps.make_train_step(losses.forecast_loss(model))
    state, _, _ = step(state, batch, None, jax.random.key(1))
    assert_every_leaf_changed(before, state.params)


def toy(workload):
    """(state, batch, carry, loss_fn) for one workload's tiny model."""
    if workload == "nmt":
        model, state, batch = nmt_setup("gru")
        return state, batch, None, losses.nmt_loss(model)
    if workload == "charlm":
        model, state, batch, carry = charlm_setup("lstm")
        return state, batch, carry, losses.charlm_loss(model)
    model, state, batch = forecast_setup("lstm")
    return state, batch, None, losses.forecast_loss(model)


@pytest.mark.parametrize("workload", ["nmt", "charlm", "forecast"])
def test_loss_falls_on_a_toy_batch(workload):
    state, batch, carry, loss_fn = toy(workload)
    step = steps.make_train_step(loss_fn)
    loss_fn = jax.jit(loss_fn, static_argnums=4)
    first, _ = loss_fn(state.params, batch, carry, jax.random.key(0), False)
    for i in range(30):
        state, _, _ = step(state, batch, carry, jax.random.key(i))
    last, _ = loss_fn(state.params, batch, carry, jax.random.key(0), False)
    assert float(last) < 0.7 * float(first), (float(first), float(last))


@pytest.mark.parametrize("cell", CELLS)
def test_charlm_carry_continues_across_windows(cell):
    """Two windows with a carried state score exactly like one long window (TBPTT)."""
    model, state, _, carry = charlm_setup(cell)
    rng = np.random.default_rng(1)
    seq = jnp.asarray(rng.integers(0, 9, (3, 17)), jnp.int32)
    x, y = seq[:, :-1], seq[:, 1:]
    loss_fn = jax.jit(losses.charlm_loss(model), static_argnums=4)
    whole = {"inputs": x, "targets": y, "reset": np.bool_(True)}
    _, (_, s_whole) = loss_fn(state.params, whole, carry, jax.random.key(0), False)
    first = {"inputs": x[:, :8], "targets": y[:, :8], "reset": np.bool_(True)}
    second = {"inputs": x[:, 8:], "targets": y[:, 8:], "reset": np.bool_(False)}
    _, (c1, s1) = loss_fn(state.params, first, carry, jax.random.key(0), False)
    _, (_, s2) = loss_fn(state.params, second, c1, jax.random.key(0), False)
    np.testing.assert_allclose(s1["sum"] + s2["sum"], s_whole["sum"], rtol=1e-5)
    # A reset window ignores whatever carry it is handed.
    reset2 = dict(second, reset=np.bool_(True))
    _, (_, s_reset) = loss_fn(state.params, reset2, c1, jax.random.key(0), False)
    _, (_, s_fresh) = loss_fn(state.params, reset2, carry, jax.random.key(0), False)
    np.testing.assert_allclose(s_reset["sum"], s_fresh["sum"], rtol=1e-6)
    assert abs(float(s_reset["sum"]) - float(s2["sum"])) > 1e-4


def test_untrained_forecaster_is_close_to_the_naive_baseline():
    model, state, batch = forecast_setup("gru")
    pred = model.apply({"params": state.params}, batch["inputs"])
    naive = np.repeat(batch["inputs"][:, -1:, :1], 5, axis=1)
    np.testing.assert_allclose(pred, naive, atol=0.02)
    assert not np.array_equal(np.asarray(pred), naive)


VARIANTS = [  # (attention, input_feeding, tie_embeddings)
    ("none", False, False), ("dot", False, True), ("general", False, False), ("scaled", True, False),
    ("bahdanau", False, False), ("bahdanau", True, True), ("general", True, False),
]


@pytest.mark.parametrize("cell,attention,feeding,tie", slow_but(  # both cells, input feeding, tied embeddings
    [(CELLS[i % 2], *v) for i, v in enumerate(VARIANTS)], fast={0, 3, 5}))
def test_step_by_step_decoding_reproduces_teacher_forcing(cell, attention, feeding, tie):
    """decode_step, which every decoder calls, must compute what training computed."""
    model, state, batch = nmt_setup(cell, attention, input_feeding=feeding, tie_embeddings=tie)
    variables = {"params": state.params}
    trg_in = batch["trg"][:, :-1]
    full = model.apply(variables, batch["src"], batch["src_len"], trg_in)
    enc = model.apply(variables, batch["src"], batch["src_len"], method=Seq2Seq.encode)
    dec_state, steps = enc.pop("state"), []
    for t in range(trg_in.shape[1]):
        dec_state, logits = model.apply(variables, dec_state, trg_in[:, t], enc, method=Seq2Seq.decode_step)
        steps.append(logits)
    np.testing.assert_allclose(np.stack(steps, 1), full, rtol=2e-5, atol=2e-5)


@pytest.mark.slow  # the whole option matrix; the default variant is in the fast tier above
@pytest.mark.parametrize("attention,feeding,tie", VARIANTS)
def test_every_variant_trains_every_parameter(attention, feeding, tie):
    model, state, batch = nmt_setup("lstm", attention, dropout=0.1, input_feeding=feeding, tie_embeddings=tie)
    names = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state.params)}
    expected = {"none": [], "dot": [], "general": ["attn_key"], "scaled": ["attn_scale"],
                "bahdanau": ["attn_query", "attn_v"]}[attention] + (["to_embed", "out_bias"] if tie else ["project"])
    assert all(any(e in n for n in names) for e in expected), names
    before = jax.tree_util.tree_map(np.asarray, state.params)
    step = steps.make_train_step(losses.nmt_loss(model, label_smoothing=0.1))
    state, _, loss = step(state, batch, None, jax.random.key(1))
    assert np.isfinite(float(loss["loss"]))
    assert_every_leaf_changed(before, state.params)


def test_impossible_model_options_are_refused():
    for options, pattern in [({"attention": "dot", "bidirectional": True}, "dot attention needs"),
                             ({"attention": "none", "input_feeding": True}, "input feeding")]:
        with pytest.raises(ValueError, match=pattern):
            nmt_setup("gru", **options)


def test_label_smoothing_changes_the_training_loss_only():
    model, state, batch = nmt_setup("gru")
    plain, smooth = losses.nmt_loss(model), losses.nmt_loss(model, label_smoothing=0.2)
    key = jax.random.key(0)
    train_plain, _ = plain(state.params, batch, None, key, True)
    train_smooth, _ = smooth(state.params, batch, None, key, True)
    eval_plain, (_, s1) = plain(state.params, batch, None, key, False)
    eval_smooth, (_, s2) = smooth(state.params, batch, None, key, False)
    assert abs(float(train_smooth) - float(train_plain)) > 1e-3
    assert float(eval_smooth) == float(eval_plain) and float(s1["sum"]) == float(s2["sum"])


def test_onehot_input_has_no_embedding_and_trains():
    model, state, batch, carry = charlm_setup("gru", dropout=0.1, input="onehot")
    assert "embedding" not in state.params
    assert state.params["rnn"]["layer0"]["wi"].shape[0] == 9  # the vocabulary, one-hot
    before = jax.tree_util.tree_map(np.asarray, state.params)
    state, _, loss = steps.make_train_step(losses.charlm_loss(model))(state, batch, carry, jax.random.key(1))
    assert np.isfinite(float(loss["loss"]))
    assert_every_leaf_changed(before, state.params)


@pytest.mark.parametrize("attention", ["general", "scaled", "bahdanau"])
def test_attention_keeps_its_parameter_names_and_initial_values(attention):
    """Attention is a module of its own whose parameters live in the model's scope under
    their historical names (model directories load unchanged), created before the tied
    output bias, as they were, so the same seed gives the same initial weights whether
    or not the embeddings are tied."""
    names = {"general": {"attn_key", "attn_combine"}, "scaled": {"attn_key", "attn_combine", "attn_scale"},
             "bahdanau": {"attn_key", "attn_combine", "attn_query", "attn_v"}}[attention]
    _, untied, _ = nmt_setup("lstm", attention)
    _, tied, _ = nmt_setup("lstm", attention, tie_embeddings=True)
    assert names <= set(untied.params) and {k for k in untied.params if k.startswith("attn")} == names
    for name in names:
        jax.tree_util.tree_map(np.testing.assert_array_equal, untied.params[name], tied.params[name])


def _forget_slices(params, hidden):
    """The forget-gate slice of every LSTM layer's input bias (gate order i, f, g, o)."""
    return [np.asarray(leaf)[hidden:2 * hidden] for path, leaf in jax.tree_util.tree_leaves_with_path(params)
            if getattr(path[-1], "key", None) == "bi"]


@pytest.mark.parametrize("section", ["nmt", "charlm", "forecast"])
def test_forget_bias_reaches_every_lstm_layer_from_params(section):
    from pipeline.params import load, model_kwargs

    params = load("params.yaml")
    kwargs = model_kwargs(getattr(params, section).model, "lstm")
    assert kwargs["forget_bias"] == getattr(params, section).model.forget_bias
    kwargs["forget_bias"] = 0.25
    hidden = 6
    if section == "nmt":
        model = Seq2Seq(11, 13, "lstm", embed=4, hidden=hidden, layers=2, attention="general", dropout=0.0,
                        bidirectional=True, forget_bias=kwargs["forget_bias"])
        args = (jnp.ones((2, 3), jnp.int32), jnp.array([3, 2], jnp.int32), jnp.ones((2, 3), jnp.int32))
    elif section == "charlm":
        model = CharLM(9, "lstm", embed=4, hidden=hidden, layers=2, dropout=0.0, forget_bias=kwargs["forget_bias"])
        args = (jnp.ones((2, 3), jnp.int32), initial_carries("lstm", 2, hidden, 2))
    else:
        model = Forecaster("lstm", hidden=hidden, layers=2, dropout=0.0, output_len=3,
                           forget_bias=kwargs["forget_bias"])
        args = (jnp.ones((2, 4, 1), jnp.float32),)
    params_tree = model.init(jax.random.key(0), *args)["params"]
    slices = _forget_slices(params_tree, hidden)
    # nmt: 2 encoder layers x 2 directions + 2 decoder layers; others: 2 layers (x2 for the forecaster's halves)
    assert len(slices) == {"nmt": 6, "charlm": 2, "forecast": 4}[section]
    for s in slices:
        np.testing.assert_array_equal(s, np.full(hidden, 0.25, np.float32))
