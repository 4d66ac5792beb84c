"""Every stage's run() on tiny fixture params, in a scratch working directory."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from pipeline import artifacts
from pipeline.inference import forecasting
from pipeline.kernels import onednn
from pipeline.sources.coindesk import PriceFormatError
from pipeline.sources.tatoeba import CorpusError

CELL = {"nmt": "lstm", "charlm": "gru", "forecast": "lstm"}


def run(stage, params, variant=None):
    importlib.import_module(f"pipeline.stages.{stage}").run(params, variant)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_params):
    """Run the whole pipeline once; the tests below inspect what it left."""
    path = tmp_path_factory.mktemp("stages")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path)
        for workload in ("nmt", "charlm", "forecast"):
            run("download", tiny_params, workload)
            run(f"prepare_{workload}", tiny_params)
            if workload == "forecast":
                run("baseline_forecast", tiny_params)
                run("backtest_forecast", tiny_params)
            run(f"train_{workload}", tiny_params, CELL[workload])
            run(f"evaluate_{workload}", tiny_params, CELL[workload])
    return path


def read_metrics(workdir, name):
    return json.loads((workdir / "metrics" / name).read_text())


def test_download_writes_verified_raw_files(workdir, tiny_params):
    for workload in ("nmt", "charlm", "forecast"):
        raw = workdir / getattr(tiny_params.sources, workload).raw
        assert raw.is_file() and raw.stat().st_size > 1000


def test_nmt_stages(workdir, tiny_params):
    prepared = workdir / "data/prepared/nmt"
    vocab = json.loads((prepared / "vocab.json").read_text())
    assert vocab["src"][:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    test = (prepared / "test.tsv").read_text().splitlines()
    train_src = {line.split("\t")[0] for line in (prepared / "train.tsv").read_text().splitlines()}
    assert test and not {line.split("\t")[0] for line in test} & train_src
    # the model directory records what rnnpipe translate needs to encode as training did
    config = json.loads((workdir / "models/nmt/lstm/config.json").read_text())
    assert config["vocab"] == vocab and vocab["normalize"] == "tatoeba"
    d = tiny_params.nmt.decode
    assert config["buckets"] == list(tiny_params.nmt.data.buckets)
    assert config["decode"] == {"max_len_factor": d.max_len_factor, "batch_size": d.batch_size}
    curves = workdir / "dvclive/nmt-lstm/plots/metrics"
    assert sorted(str(p.relative_to(curves)) for p in curves.rglob("*.tsv")) == [
        "train/grad_norm.tsv", "train/loss.tsv", "train/lr.tsv", "train/tokens_per_s.tsv",
        "valid/acc.tsv", "valid/bleu.tsv", "valid/loss.tsv", "valid/ppl.tsv"]
    bleu = (curves / "valid/bleu.tsv").read_text().splitlines()
    assert bleu[0] == "step\tbleu" and len(bleu) == 3
    assert all(
        float(row.split("\t")[1]) > 0 for row in (curves / "train/tokens_per_s.tsv").read_text().splitlines()[1:]
    )
    m = read_metrics(workdir, "nmt-lstm.json")
    valid = (prepared / "valid.tsv").read_text().splitlines()
    assert m["pairs"] == len(test) and m["valid_pairs"] == len(valid)
    for key in ("bleu", "chrf", "bleu_greedy", "valid_bleu", "valid_chrf", "valid_bleu_greedy"):
        assert 0.0 <= m[key] <= 100.0, key
    assert m["decode"] == "beam5" and "valid_bleu_signature" not in m
    # teacher-forced loss, its perplexity and token accuracy, on dev and test
    for prefix in ("", "valid_"):
        assert 0.0 < m[f"{prefix}loss"] < np.log(len(vocab["trg"])) + 1
        assert m[f"{prefix}perplexity"] == pytest.approx(np.exp(m[f"{prefix}loss"]), rel=1e-6)
        assert 0.0 < m[f"{prefix}accuracy"] < 1.0
    assert m["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    for split, rows in (("test", test), ("valid", valid)):
        hyps = (workdir / f"samples/nmt-lstm-{split}.hyp.txt").read_text().split("\n")[:-1]
        assert len(hyps) == len(rows)


def test_charlm_stages(workdir, tiny_params):
    m = read_metrics(workdir, "charlm-gru.json")
    assert m["valid_bpc"] == pytest.approx(m["valid_loss"] / np.log(2), rel=1e-4)
    assert 0.5 < m["valid_loss"] < np.log(70)  # a few steps cannot be worse than uniform by much
    machine = m["provenance"]  # what produced it, as strings (dvc metrics diff shows them as labels)
    assert set(machine) == {"cpu", "cores", "device", "jax", "jaxlib", "xla_flags", "kernel"}
    assert machine["device"] == f"{jax.device_count()} x {jax.devices()[0].device_kind}"
    assert machine["jax"] == jax.__version__ and machine["cores"] == str(os.cpu_count()) and machine["cpu"]
    # the recurrent kernel that trained each model: a GRU is always scanned; an LSTM runs on
    # oneDNN where the kernel builds, except the translator's padded encoder
    lstm = "scan" if onednn.unavailable() else "onednn"
    assert machine["kernel"] == "scan"
    expected = {"nmt-lstm.json": "onednn+scan" if lstm == "onednn" else "scan",
                "forecast-lstm.json": lstm, "forecast-lstm-horizon.json": lstm}
    for name, kernel in expected.items():
        assert read_metrics(workdir, name)["provenance"] == {**machine, "kernel": kernel}, name
    sample = (workdir / "samples/charlm-gru-sample.txt").read_text()
    assert sample.startswith(tiny_params.charlm.sample.prime)
    assert len(sample) == len(tiny_params.charlm.sample.prime) + tiny_params.charlm.sample.length + 1


def test_forecast_stages(workdir, tiny_params):
    m = read_metrics(workdir, "forecast-lstm.json")
    for key in ("mae", "rmse", "mape", "mase", "naive_mae", "naive_rmse", "naive_mape", "naive_mase",
                "drift_mae", "drift_mase", "autoarima_mae", "autoarima_mase", "autoets_mae", "autoets_rmse",
                "mae_vs_naive", "mae_vs_best_baseline"):
        assert np.isfinite(m[key]) and m[key] > 0, key
    best = min(m[f"{b}_mae"] for b in ("naive", "drift", "autoarima", "autoets"))
    assert m["mae_vs_best_baseline"] == pytest.approx(m["mae"] / best, rel=1e-3)
    horizon = (workdir / "plots/forecast-lstm-horizon.csv").read_text().splitlines()
    assert horizon[0].startswith("step,mae,naive_mae,drift_mae,autoarima_mae,autoets_mae")
    assert len(horizon) == 1 + tiny_params.forecast.data.output_len
    by_h = json.loads((workdir / "metrics/forecast-lstm-horizon.json").read_text())
    h = tiny_params.forecast.data.output_len
    assert by_h["horizon"] == list(range(1, h + 1)) and len(by_h["drift"]["mase"]) == h
    assert len(by_h["model_beats_naive_at"]) == m["horizons_beating_naive"]
    assert by_h["naive"]["mae"][0] < by_h["naive"]["mae"][-1]  # naive error grows with the horizon
    # the baselines' prediction intervals, scored
    for b in ("naive", "drift", "autoarima", "autoets"):
        assert 0 <= m[f"{b}_coverage80"] <= m[f"{b}_coverage95"] <= 1, b
        assert 0 < m[f"{b}_interval_score80"] and 0 < m[f"{b}_interval_score95"], b
        assert len(by_h[b]["coverage95"]) == h
    assert by_h["naive"]["coverage95"][0] > 0.5  # one day ahead, a random walk's 95 % band mostly holds
    # the model: an ensemble of train.seeds networks, with conformal intervals
    assert 0 <= m["model_coverage80"] <= m["model_coverage95"] <= 1 and len(by_h["model"]["coverage80"]) == h
    assert m["seed_mae_min"] < m["seed_mae_max"]  # two seeds, two different networks
    assert m["mae_seed_spread"] == pytest.approx(m["seed_mae_max"] - m["seed_mae_min"], abs=2e-4)
    loaded = forecasting.load(workdir / "models/forecast/lstm")
    assert loaded.seeds == (0, 1) and len(loaded.members) == 2 and set(loaded.widths) == {80, 95}
    assert np.all(loaded.widths[95] >= loaded.widths[80]) and np.all(loaded.widths[80] > 0)
    data = artifacts.read_npz(workdir / "data/prepared/forecast/windows.npz")
    scored = forecasting.on_windows(loaded, data["series"], data["test_starts"])
    alone = forecasting.forecast_members(loaded.model, loaded.members, scored.inputs)
    np.testing.assert_allclose(scored.pred, alone.mean(axis=0))  # the forecast is the members' mean
    assert float(forecasting.errors(scored)["mae"]) == pytest.approx(m["mae"], abs=1e-3)
    png = (workdir / "plots/forecast-lstm.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_baselines_are_fitted_on_the_days_before_each_test_origin(workdir, tiny_params):

    p = tiny_params.forecast
    windows = artifacts.read_npz(workdir / "data/prepared/forecast/windows.npz")
    stored = artifacts.read_npz(workdir / p.paths.baselines / "forecasts.npz")
    starts = windows["test_starts"]
    np.testing.assert_array_equal(stored["test_starts"], starts)
    methods = ("naive", "drift", *p.baselines.methods)
    assert set(stored) == {"test_starts", *methods, *(f"{m}_{side}{level}" for m in methods
                                                       for side in ("lo", "hi") for level in (80, 95))}
    models = artifacts.read_json(workdir / p.paths.baselines / "models.json")
    assert models["fit_days"] == p.baselines.fit_days and len(models["windows"]) == len(starts)
    # Window k's AutoETS forecast is the fit on exactly the fit_days days before its origin.
    k = len(starts) // 2
    origin = int(starts[k]) + p.data.input_len
    history = windows["series"][origin - p.baselines.fit_days:origin, 0]
    from pipeline.evaluation import baselines
    again = baselines.fit_forecasts(history[None], p.data.output_len, ("autoets",))
    np.testing.assert_allclose(stored["autoets"][k], again.points["autoets"][0], rtol=1e-9)
    for level in baselines.LEVELS:
        np.testing.assert_allclose(stored[f"autoets_lo{level}"][k], again.intervals["autoets"][level][0][0], rtol=1e-9)
        np.testing.assert_allclose(stored[f"autoets_hi{level}"][k], again.intervals["autoets"][level][1][0], rtol=1e-9)
    assert models["windows"][k] == {
        "origin": str(windows["dates"][origin]),
        "autoarima": models["windows"][k]["autoarima"],
        "autoets": again.specs["autoets"][0],
    }
    np.testing.assert_array_equal(stored["naive"][k], np.full(p.data.output_len, windows["series"][origin - 1, 0]))
    assert sum(models["chosen"]["autoets"].values()) == len(starts)
    # Histories end the day before the origin: the first forecast day is never fitted on.
    fit_on = baselines.histories(windows["series"], starts, p.data.input_len, p.baselines.fit_days)
    assert fit_on.shape == (len(starts), p.baselines.fit_days)
    np.testing.assert_array_equal(fit_on[:, -1], windows["series"][starts + p.data.input_len - 1, 0])


def test_the_backtest_scores_every_method_on_the_same_origins(workdir, tiny_params):
    p = tiny_params.forecast
    m = read_metrics(workdir, "backtest.json")
    windows = artifacts.read_npz(workdir / p.paths.prepared / "windows.npz")
    from pipeline.evaluation import backtest

    origins = backtest.origins(len(windows["series"]), p.data.output_len, p.backtest.every, p.backtest.min_history)
    assert m["origins"] == len(origins) and m["folds"] == p.backtest.folds
    assert m["last_origin"] == str(windows["dates"][len(windows["series"]) - p.data.output_len])
    methods = ("model", "single", "naive", "drift", *p.baselines.methods)  # single: the ensemble's first network
    for name in methods:
        assert 0 < m[f"{name}_mase"] and 0 <= m[f"{name}_beats_naive_at"] <= p.data.output_len, name
        groups = [m[f"{name}_mase_h{a}_{b}"] for a, b in backtest.groups(p.data.output_len)]
        assert min(groups) <= m[f"{name}_mase"] <= max(groups)
    assert m["naive_beats_naive_at"] == m["naive_loses_to_naive_at"] == 0
    for name in methods:  # the network's conformal intervals and statsforecast's, on the same origins
        assert 0 <= m[f"{name}_coverage80"] <= m[f"{name}_coverage95"] <= 1
        assert 0 < m[f"{name}_interval_score80"] and 0 <= m[f"{name}_coverage95_worst_gap"] <= 1
    by_h = json.loads((workdir / "metrics/backtest-horizon.json").read_text())
    assert by_h["origins"] == [str(windows["dates"][o]) for o in origins]
    for name in methods:
        assert len(by_h[name]["mase"]) == p.data.output_len
        assert all(
            lo <= mid <= hi
            for lo, mid, hi in zip(by_h[name]["mase_lo"], by_h[name]["mase"], by_h[name]["mase_hi"], strict=True)
        )
        assert by_h["beats_naive_at"][name] == [h + 1 for h in range(p.data.output_len)
                                                if by_h[name]["dm"][h] < 0 and by_h[name]["dm_p"][h] < 0.05]
        assert len(by_h["loses_to_naive_at"][name]) == m[f"{name}_loses_to_naive_at"]
        gap = max(abs(c - 0.95) for c in by_h[name]["coverage95"])
        assert gap == pytest.approx(m[f"{name}_coverage95_worst_gap"], abs=1e-4)
    # naive's MASE at horizon 1 is its error over the in-sample naive error: near 1 on a random walk
    assert 0.5 < by_h["naive"]["mase"][0] < 2.0
    rows = (workdir / "plots/backtest-horizon.csv").read_text().splitlines()
    assert rows[0].startswith("step,model_mase,single_mase,naive_mase,drift_mase,autoarima_mase,autoets_mase")
    assert len(rows) == 1 + p.data.output_len
    assert (workdir / "plots/backtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baseline_params_and_stale_baselines_are_clear_errors(workdir, tiny_params, monkeypatch):
    import dataclasses

    from pipeline.errors import PipelineError
    from pipeline.params import ParamsError

    monkeypatch.chdir(workdir)
    f = tiny_params.forecast
    too_long = dataclasses.replace(tiny_params, forecast=dataclasses.replace(
        f, baselines=dataclasses.replace(f.baselines, fit_days=100_000)))
    stored = (workdir / f.paths.baselines / "forecasts.npz").read_bytes()
    with pytest.raises(
        ParamsError, match=r"'forecast.baselines.fit_days' is 100000; it must be at least 10 and at most \d+"
    ):
        run("baseline_forecast", too_long)
    assert (workdir / f.paths.baselines / "forecasts.npz").read_bytes() == stored
    # Baselines made for other windows are refused by evaluate, not silently mis-scored.
    other = dataclasses.replace(tiny_params, forecast=dataclasses.replace(
        f, paths=dataclasses.replace(f.paths, prepared=str(workdir / "other-prepared"))))
    windows = artifacts.read_npz(workdir / f.paths.prepared / "windows.npz")
    windows["test_starts"] = windows["test_starts"][1:]
    artifacts.write_npz(workdir / "other-prepared/windows.npz", **windows)
    with pytest.raises(
        PipelineError, match=r"forecasts.npz: made for other test windows .* `dvc repro baseline_forecast`"
    ):
        run("evaluate_forecast", other, "lstm")


def test_fewer_baselines_keep_the_plotted_columns(workdir, tiny_params, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    for part in ("data/prepared/forecast", "models/forecast/lstm"):
        shutil.copytree(workdir / part, tmp_path / part)
    f = tiny_params.forecast
    params = dataclasses.replace(tiny_params, forecast=dataclasses.replace(
        f, baselines=dataclasses.replace(f.baselines, methods=("autoets",), workers=1)))
    monkeypatch.chdir(tmp_path)
    run("baseline_forecast", params)
    run("evaluate_forecast", params, "lstm")
    m = read_metrics(tmp_path, "forecast-lstm.json")
    assert "autoets_mae" in m and not any(k.startswith("autoarima") for k in m)
    assert m == {
        k: v for k, v in read_metrics(workdir, "forecast-lstm.json").items() if not k.startswith("autoarima")
    } | {"mae_vs_best_baseline": m["mae_vs_best_baseline"]}
    rows = [line.split(",") for line in (tmp_path / "plots/forecast-lstm-horizon.csv").read_text().splitlines()]
    column = rows[0].index("autoarima_mae")
    assert all(row[column] == "" for row in rows[1:])
    assert all(float(row[rows[0].index("autoets_mae")]) > 0 for row in rows[1:])


def test_bad_input_keeps_previous_prepared_outputs(workdir, tiny_params, monkeypatch):
    monkeypatch.chdir(workdir)
    windows_file = workdir / "data/prepared/forecast/windows.npz"
    before = windows_file.read_bytes()
    raw = Path(tiny_params.sources.forecast.raw)
    good = raw.read_bytes()
    try:
        raw.write_text("<html><body>502 Bad Gateway</body></html>")
        with pytest.raises(PriceFormatError, match="close.json: looks like an HTML"):
            run("prepare_forecast", tiny_params)
        assert windows_file.read_bytes() == before
        pairs_raw = Path(tiny_params.sources.nmt.raw)
        pairs_good = pairs_raw.read_bytes()
        pairs_raw.write_bytes(pairs_good + b"a line without a tab\n")
        vocab = (workdir / "data/prepared/nmt/vocab.json").read_bytes()
        with pytest.raises(CorpusError, match=r"fra-eng.txt:1201: expected 2 or 3 tab-separated"):
            run("prepare_nmt", tiny_params)
        assert (workdir / "data/prepared/nmt/vocab.json").read_bytes() == vocab
    finally:
        raw.write_bytes(good)
        pairs_raw.write_bytes(pairs_good)


def test_each_evaluate_stage_writes_a_model_card(workdir, tiny_params):
    sections = ("## Model details", "## Uses", "## Bias, risks and limitations", "### Training data",
                "### Training procedure", "## Evaluation", "## Technical specifications", "## How to reproduce")
    for name, metric in (("nmt-lstm", "bleu"), ("charlm-gru", "valid_loss"), ("forecast-lstm", "mae")):
        card = (workdir / "metrics/cards" / f"{name}.md").read_text()
        scores = read_metrics(workdir, f"{name}.json")
        assert card.startswith("---\nlibrary_name: flax\n") and f"model_name: {name}\n---" in card
        assert [s for s in sections if s not in card] == [], name
        shown = f"{scores[metric]:,.{2 if abs(scores[metric]) >= 100 else 4}f}".rstrip("0").rstrip(".")
        assert f"| {shown} | – |" in card, (name, shown)  # its value; no bands in this scratch repository
        assert "No seed bands are recorded" in card
        assert f"| recurrent kernel that ran | {scores['provenance']['kernel']} |" in card
        assert f"| cpu | {scores['provenance']['cpu']} |" in card
    nmt = (workdir / "metrics/cards/nmt-lstm.md").read_text()
    train_pairs = len((workdir / "data/prepared/nmt/train.tsv").read_text().splitlines())
    assert f"{train_pairs:,} training pairs" in nmt and f"| steps | {tiny_params.nmt.train.steps:,} |" in nmt
    forecast = read_metrics(workdir, "forecast-lstm.json")
    verdict = "does **not** beat the naive forecast" if forecast["mae_vs_naive"] >= 1 else "beats the naive forecast"
    assert verdict in (workdir / "metrics/cards/forecast-lstm.md").read_text()


def test_model_directory_is_self_describing(workdir):
    """The directory alone (no params.yaml) rebuilds the model its parameters fit."""
    import jax

    from pipeline.models.forecaster import Forecaster
    from pipeline.models.store import load_model
    members, config = load_model(workdir / "models/forecast/lstm")
    assert config["model"]["cell"] == "lstm" and config["features"] == ["close"]
    assert config["seeds"] == [0, 1] and sorted(members) == ["0", "1"]  # an ensemble: one tree per seed
    assert set(config["intervals"]) == {"80", "95"} and config["calibration"]["days"] == 60
    params = members["1"]
    model = Forecaster(**config["model"])
    inputs = np.zeros((2, config["input_len"], len(config["features"])), np.float32)
    fresh = model.init(jax.random.key(0), inputs)["params"]
    assert jax.tree_util.tree_structure(fresh) == jax.tree_util.tree_structure(params)
    assert [np.shape(x) for x in jax.tree_util.tree_leaves(fresh)] == [
        np.shape(x) for x in jax.tree_util.tree_leaves(params)
    ]
    assert model.apply({"params": params}, inputs).shape == (2, config["model"]["output_len"], 1)


def test_a_single_network_saved_before_ensembles_still_loads(workdir, tmp_path):
    """A served model from before ensembles (no seeds, no widths) forecasts as it did,
    with no intervals."""
    from pipeline.models.store import load_model, save_model

    members, config = load_model(workdir / "models/forecast/lstm")
    old = {k: v for k, v in config.items() if k not in ("seeds", "intervals", "calibration")}
    save_model(tmp_path / "old", members["0"], old)
    loaded, ensemble = forecasting.load(tmp_path / "old"), forecasting.load(workdir / "models/forecast/lstm")
    assert loaded.seeds == () and loaded.widths is None and len(loaded.members) == 1
    inputs = artifacts.read_npz(workdir / "data/prepared/forecast/windows.npz")["series"][None, :config["input_len"]]
    pred = forecasting.predict(loaded, inputs)
    np.testing.assert_array_equal(pred, forecasting.forecast_members(ensemble.model, ensemble.members[:1], inputs)[0])
    assert forecasting.intervals(loaded, inputs, pred[..., 0]) == {}


def test_model_bytes_are_a_function_of_the_params(tmp_path):
    """Saving the same parameters twice gives identical files (stable DVC hashes)."""
    import numpy as np

    from pipeline.models.store import CheckpointError, load_model, save_model
    params = {"layer": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    save_model(tmp_path / "a", params, {"x": 1})
    save_model(tmp_path / "b", params, {"x": 1})
    for name in ("params.msgpack", "config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    loaded, config = load_model(tmp_path / "a")
    np.testing.assert_array_equal(loaded["layer"]["w"], params["layer"]["w"])
    (tmp_path / "a" / "params.msgpack").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="params.msgpack: unreadable parameters"):
        load_model(tmp_path / "a")
    with pytest.raises(CheckpointError, match="not a model directory"):
        load_model(tmp_path / "missing")


def test_alternative_source_formats(tmp_path, tiny_params, monkeypatch):
    """Zip archives, Gutenberg texts and the CoinDesk CSV export (two features) run through."""
    import dataclasses
    import zipfile

    from .conftest import FIXTURES, ROOT

    archive = tmp_path / "fra-eng.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(ROOT / "data/embedded/fra-eng/_about.txt", "_about.txt")
        zf.write(FIXTURES / "fra-eng-excerpt.txt", "fra.txt")
    s = tiny_params.sources
    params = dataclasses.replace(
        tiny_params,
        sources=dataclasses.replace(
            s,
            nmt=dataclasses.replace(s.nmt, url=str(archive), sha256=None, raw="data/raw/nmt/fra-eng.zip",
                                    format="tatoeba-zip"),
            charlm=dataclasses.replace(s.charlm, url=str(FIXTURES / "anna-tail.txt"), sha256=None,
                                       format="gutenberg"),
            forecast=dataclasses.replace(s.forecast, url=str(FIXTURES / "coindesk-export-head.csv"),
                                         sha256=None, raw="data/raw/forecast/export.csv", format="coindesk-csv"),
        ),
        forecast=dataclasses.replace(
            tiny_params.forecast,
            data=dataclasses.replace(tiny_params.forecast.data, features=("close", "high"), test_fraction=0.3),
        ),
    )
    monkeypatch.chdir(tmp_path)
    for workload in ("nmt", "charlm", "forecast"):
        run("download", params, workload)
        run(f"prepare_{workload}", params)
    assert len((tmp_path / "data/prepared/nmt/train.tsv").read_text().splitlines()) > 500
    chars = json.loads((tmp_path / "data/prepared/charlm/vocab.json").read_text())["chars"]
    assert "*" not in chars  # the Gutenberg END marker line is gone
    windows = artifacts.read_npz(tmp_path / "data/prepared/forecast/windows.npz")
    assert windows["series"].shape == (400, 2)
    assert np.all(windows["series"][:, 1] >= windows["series"][:, 0])  # high >= close
    run("baseline_forecast", params)
    run("train_forecast", params, "gru")
    run("evaluate_forecast", params, "gru")
    assert read_metrics(tmp_path, "forecast-gru.json")["test_windows"] > 0


def test_a_feature_the_format_lacks_names_the_key(tmp_path, tiny_params, monkeypatch):
    import dataclasses

    from pipeline.params import ParamsError

    params = dataclasses.replace(
        tiny_params,
        forecast=dataclasses.replace(
            tiny_params.forecast, data=dataclasses.replace(tiny_params.forecast.data, features=("close", "open")),
        ),
    )
    monkeypatch.chdir(tmp_path)
    run("download", params, "forecast")
    with pytest.raises(
        ParamsError, match=r"'forecast.data.features' asks for \['open'\], but format 'bpi-json' only has \['close'\]"
    ):
        run("prepare_forecast", params)


def run_generate(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "pipeline", "generate", *args], capture_output=True,
                          text=True, timeout=300)


def test_generate_command_samples_from_a_trained_model(workdir):
    model = str(workdir / "models/charlm/gru")
    out = run_generate(model, "--prime", "ROMEO:", "--length", "40", "--num", "3", "--top-p", "0.9", "--seed", "4")
    assert out.returncode == 0, out.stderr
    samples = out.stdout.rstrip("\n").split("\n\n")
    assert len(samples) >= 3 and out.stdout.startswith("ROMEO:")
    again = run_generate(model, "--prime", "ROMEO:", "--length", "40", "--num", "3", "--top-p", "0.9", "--seed", "4")
    assert again.stdout == out.stdout  # a seed gives the same text
    bad = run_generate(model, "--prime", "\u03a9")
    assert bad.returncode == 1 and "not in the vocabulary" in bad.stderr and "Traceback" not in bad.stderr


def test_training_samples_are_written_per_step_and_temperature(workdir, tiny_params):
    s = tiny_params.charlm.sample
    folder = workdir / "dvclive/charlm-gru/samples"
    assert sorted(p.name for p in folder.iterdir()) == [
        "step-000003-t0.5.txt", "step-000003-t1.txt", "step-000006-t0.5.txt", "step-000006-t1.txt"]
    texts = {p.name: p.read_text() for p in folder.iterdir()}
    assert all(t.startswith(s.prime) and len(t) == len(s.prime) + s.length + 1 for t in texts.values())
    # the temperature and the step both reach the sample (at step 6 the tiny model is still
    # so flat that both temperatures draw the same characters from the same key)
    assert texts["step-000003-t1.txt"] != texts["step-000003-t0.5.txt"]
    assert texts["step-000003-t1.txt"] != texts["step-000006-t1.txt"]


def test_generate_samples_from_a_training_checkpoint(workdir):
    runs = str(workdir / "checkpoints/charlm/train_charlm@gru")
    args = ("--prime", "ROMEO:", "--length", "40", "--seed", "4")
    final = run_generate(str(workdir / "models/charlm/gru"), *args)
    last = run_generate(runs, "--step", "6", *args)
    early = run_generate(runs, "--step", "3", *args)
    assert last.returncode == 0 and early.returncode == 0, last.stderr + early.stderr
    assert last.stdout == final.stdout  # the char LM keeps its last step: the same parameters
    assert early.stdout != last.stdout and "step 3" in early.stderr
    missing = run_generate(runs, "--step", "5", *args)
    assert missing.returncode == 1 and "no checkpoint of step 5; it has steps [3, 6]" in missing.stderr


def test_forecast_command_writes_the_next_horizon(workdir, tiny_params, tmp_path):
    import subprocess
    import sys

    def run_forecast(*args):
        return subprocess.run([sys.executable, "-m", "pipeline", "forecast", *args], cwd=workdir,
                              capture_output=True, text=True, timeout=300)

    out = run_forecast("models/forecast/lstm", "--out", str(tmp_path / "fc"), "--png")
    assert out.returncode == 0, out.stderr
    h = tiny_params.forecast.data.output_len
    rows = (tmp_path / "fc.csv").read_text().splitlines()
    meta = json.loads((workdir / "data/prepared/forecast/meta.json").read_text())
    result = json.loads((tmp_path / "fc.json").read_text())
    assert rows[0] == "date,forecast,lo80,hi80,lo95,hi95,naive" and len(rows) == 1 + h
    assert result["last_day"] == meta["last_day"] and result["dates"][0] == "2018-11-21"
    assert len(result["forecast"]) == h and all(v > 0 for v in result["forecast"]) and result["networks"] == 2
    for row in rows[1:]:  # the 95 % interval holds the 80 % one, which holds the forecast
        point, lo80, hi80, lo95, hi95, _ = map(float, row.split(",")[1:])
        assert lo95 <= lo80 <= point <= hi80 <= hi95
    assert (tmp_path / "fc.png").read_bytes()[:4] == b"\x89PNG"
    printed = run_forecast("models/forecast/lstm")
    assert printed.stdout.splitlines()[1].startswith("2018-11-21,")

    other = tmp_path / "prepared"
    other.mkdir()
    (other / "windows.npz").write_bytes((workdir / "data/prepared/forecast/windows.npz").read_bytes())
    (other / "meta.json").write_text(json.dumps(dict(meta, features=["close", "high"])))
    bad = run_forecast("models/forecast/lstm", "--prepared", str(other))
    assert bad.returncode == 1 and "made for features ['close']" in bad.stderr
