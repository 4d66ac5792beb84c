"""evaluate_forecast@<cell>: errors in price units beside the naive last-value baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import artifacts, metrics, plots, windows
from pipeline.checkpoint import load_model
from pipeline.models.forecaster import Forecaster
from pipeline.params import Params


def predict(model, model_params, inputs: np.ndarray) -> np.ndarray:
    """Forecasts in price units <float32>[n, horizon] for raw input windows."""
    inputs_n, _, mean, std = windows.normalize(inputs)
    pred_n = np.asarray(model.apply({"params": model_params}, inputs_n))
    return windows.denormalize(pred_n, mean, std)


def run(params: Params, cell: str) -> None:
    p = params.forecast
    model_params, config = load_model(Path(p.paths.models) / cell)
    model = Forecaster(**config["model"])
    data = artifacts.read_npz(Path(p.paths.prepared) / "windows.npz")
    starts = data["test_starts"]
    inputs, truth = windows.gather(data["series"], starts, p.data.input_len, p.data.output_len)
    pred = predict(model, model_params, inputs)
    naive = windows.naive_forecast(inputs, p.data.output_len)

    model_err = metrics.forecast_errors(pred, truth)
    naive_err = metrics.forecast_errors(naive, truth)
    scores = {"test_windows": int(len(starts))}
    scores.update({k: round(float(v), 4) for k, v in model_err.items()})
    scores.update({f"naive_{k}": round(float(v), 4) for k, v in naive_err.items()})
    scores["mae_vs_naive"] = round(float(model_err["mae"] / naive_err["mae"]), 4)
    artifacts.write_json(Path(p.paths.metrics) / f"forecast-{cell}.json", scores)

    by_h = metrics.forecast_errors(pred, truth, axis=0)
    naive_h = metrics.forecast_errors(naive, truth, axis=0)
    rows = [
        {"step": h + 1, "mae": float(by_h["mae"][h]), "naive_mae": float(naive_h["mae"][h]),
         "rmse": float(by_h["rmse"][h]), "naive_rmse": float(naive_h["rmse"][h])}
        for h in range(p.data.output_len)
    ]
    plot_dir = Path(p.paths.plots)
    artifacts.write_csv(plot_dir / f"forecast-{cell}-horizon.csv", rows)
    shown = np.linspace(0, len(starts) - 1, p.evaluate.plot_windows).astype(int)
    plots.save_forecasts(
        plot_dir / f"forecast-{cell}.png", data["dates"], data["series"][:, 0], starts[shown],
        p.data.input_len, pred[shown], naive[shown], title=f"forecast@{cell}: test windows",
    )
    print(f"evaluate_forecast@{cell}: MAE {scores['mae']:.2f} vs naive {scores['naive_mae']:.2f} "
          f"(ratio {scores['mae_vs_naive']:.3f}) over {len(starts)} test windows")
