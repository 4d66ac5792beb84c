"""evaluate_forecast@<cell>: errors in price units beside the baselines on the same windows.

MAE, RMSE, MAPE and MASE overall and per horizon, for the network and for each baseline
that baseline_forecast computed (naive, drift, and AutoARIMA/AutoETS/AutoTheta), and the
coverage and interval score of the model's conformal and the baselines' 80 % and 95 %
prediction intervals; the per-horizon numbers go to
``metrics/forecast-<cell>-horizon.json`` and to the CSV that DVC plots.

Every other forecast series (``forecast.data.targets`` > 1: EUR beside USD) gets the
same against its own naive forecast, with keys prefixed by its name: errors, its
conformal intervals' coverage and interval score, errors and coverage per horizon (under
``series`` in the horizon file), and its own column of panels in the plot.

For an ensemble, each network is scored alone too: ``seed_mae_min``/``max`` and
``mae_seed_spread`` (max - min; likewise for MASE) say how far the seed alone moves the
error, and ``rnnpipe report`` calls a change to this model's metrics within that spread
noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import artifacts
from pipeline.data import windows
from pipeline.evaluation import baselines, cards, conformal, metrics, noise, plots, provenance
from pipeline.inference import forecasting
from pipeline.params import Params


def run(params: Params, cell: str) -> None:
    p = params.forecast
    loaded = forecasting.load(Path(p.paths.models) / cell)
    forecasting.check(loaded, "params.yaml", features=p.data.features, input_len=p.data.input_len,
                      output_len=p.data.output_len, outputs=p.data.targets)
    data = artifacts.read_npz(Path(p.paths.prepared) / "windows.npz")
    starts = data["test_starts"]
    scored = forecasting.on_windows(loaded, data["series"], starts)
    pred = scored.pred[..., 0]
    stored = baselines.load(p.paths.baselines, starts)

    scores: dict[str, float | int] = {"test_windows": int(len(starts))}
    model_err = forecasting.errors(scored)
    scores.update({k: round(float(v), 4) for k, v in model_err.items()})
    for name, forecast in stored.points.items():
        err = forecasting.errors(scored, forecast)
        scores.update({f"{name}_{k}": round(float(v), 4) for k, v in err.items()})
    truth = scored.truth[..., 0]
    if len(loaded.members) > 1:
        alone = forecasting.forecast_members(loaded.model, loaded.members, scored.inputs,
                                             forecasting.std_factor(loaded.config))[..., 0]
        for k in ("mae", "mase"):
            each = [float(forecasting.errors(scored, f)[k]) for f in alone]
            scores.update({f"seed_{k}_min": round(min(each), 4), f"seed_{k}_max": round(max(each), 4),
                           f"{k}_seed_spread": round(max(each) - min(each), 4)})
    model_bounds = forecasting.intervals(loaded, scored.inputs, pred)
    for name, levels in {"model": model_bounds, **stored.intervals}.items():
        for level, (lo, hi) in levels.items():
            got = metrics.interval_scores(lo, hi, truth, level)
            scores.update({f"{name}_{k}{level}": round(float(got[k]), 4) for k in ("coverage", "interval_score")})
    scores["mae_vs_naive"] = round(float(model_err["mae"] / scores["naive_mae"]), 4)
    best = min(stored.points, key=lambda name: scores[f"{name}_mae"])
    scores["mae_vs_best_baseline"] = round(float(model_err["mae"] / scores[f"{best}_mae"]), 4)
    extra, series_h = {}, {}  # the other forecast series: name -> (index, naive forecast, intervals)
    for j, name in enumerate(loaded.targets[1:], start=1):
        naive_j = windows.naive_forecast(scored.inputs, p.data.output_len, j)
        bounds_j = forecasting.intervals(loaded, scored.inputs, scored.pred[..., j], series=j)
        extra[name] = (j, naive_j, bounds_j)
        err_j, naive_err_j = forecasting.errors(scored, series=j), forecasting.errors(scored, naive_j, series=j)
        scores.update({f"{name}_{k}": round(float(v), 4) for k, v in err_j.items()})
        scores.update({f"{name}_naive_{k}": round(float(v), 4) for k, v in naive_err_j.items()})
        scores[f"{name}_mae_vs_naive"] = round(float(err_j["mae"] / naive_err_j["mae"]), 4)
        for level, (lo, hi) in bounds_j.items():
            got = metrics.interval_scores(lo, hi, scored.truth[..., j], level)
            scores.update({f"{name}_model_{k}{level}": round(float(got[k]), 4)
                           for k in ("coverage", "interval_score")})
        model_h = forecasting.errors(scored, axis=0, series=j)
        for level, (lo, hi) in bounds_j.items():
            model_h[f"coverage{level}"] = metrics.interval_scores(lo, hi, scored.truth[..., j], level,
                                                                  axis=0)["coverage"]
        naive_h = forecasting.errors(scored, naive_j, axis=0, series=j)
        series_h[name] = {"model": model_h, "naive": naive_h}
        scores[f"{name}_horizons_beating_naive"] = int(np.sum(model_h["mae"] < naive_h["mae"]))

    by_h = {"model": forecasting.errors(scored, axis=0)}
    by_h.update({name: forecasting.errors(scored, f, axis=0) for name, f in stored.points.items()})
    for name, levels in {"model": model_bounds, **stored.intervals}.items():
        for level, (lo, hi) in levels.items():
            by_h[name][f"coverage{level}"] = metrics.interval_scores(lo, hi, truth, level, axis=0)["coverage"]
    beats = [h + 1 for h in range(p.data.output_len) if by_h["model"]["mae"][h] < by_h["naive"]["mae"][h]]
    scores["horizons_beating_naive"] = len(beats)
    stamped = provenance.stamped(scores, loaded.kernel)
    artifacts.write_json(Path(p.paths.metrics) / f"forecast-{cell}.json", stamped)
    card = cards.forecast_card(cell, loaded.config, cards.parameter_count(loaded.members), stamped, p,
                               params.sources.forecast, artifacts.read_json_if_exists(noise.NOISE_FILE),
                               artifacts.read_json(Path(p.paths.prepared) / "meta.json"))
    artifacts.write_text(Path(p.paths.metrics) / "cards" / f"forecast-{cell}.md", cards.render(card))
    artifacts.write_json(Path(p.paths.metrics) / f"forecast-{cell}-horizon.json", provenance.stamped({
        "horizon": list(range(1, p.data.output_len + 1)), "model_beats_naive_at": beats,
        **{who: {k: [round(float(x), 4) for x in v] for k, v in errs.items()} for who, errs in by_h.items()},
        **({"series": {name: {who: {k: [round(float(x), 4) for x in v] for k, v in errs.items()}
                              for who, errs in both.items()} for name, both in series_h.items()}}
           if series_h else {}),
    }, loaded.kernel))
    naive = stored.points["naive"]
    rows = [
        {"step": h + 1, "mae": float(by_h["model"]["mae"][h]),
         **{f"{name}_mae": float(by_h[name]["mae"][h]) for name in ("naive", "drift")},
         # Every statistical baseline has a column, empty when not fitted, so that the
         # plot dvc.yaml declares finds its fields whatever forecast.baselines.methods is.
         **{f"{name}_mae": float(by_h[name]["mae"][h]) if name in by_h else "" for name in baselines.METHODS},
         "rmse": float(by_h["model"]["rmse"][h]), "naive_rmse": float(by_h["naive"]["rmse"][h]),
         "mase": float(by_h["model"]["mase"][h]), "naive_mase": float(by_h["naive"]["mase"][h]),
         **{f"coverage{level}": float(by_h["model"][f"coverage{level}"][h]) if model_bounds else ""
            for level in conformal.LEVELS}}
        for h in range(p.data.output_len)
    ]
    for name, both in series_h.items():
        for h, row in enumerate(rows):
            row[f"{name}_mae"] = float(both["model"]["mae"][h])
            row[f"{name}_naive_mae"] = float(both["naive"]["mae"][h])
    plot_dir = Path(p.paths.plots)
    artifacts.write_csv(plot_dir / f"forecast-{cell}-horizon.csv", rows)
    shown = np.linspace(0, len(starts) - 1, p.evaluate.plot_windows).astype(int)
    panels = [plots.Series(loaded.targets[0], data["series"][:, 0], pred[shown], naive[shown],
                           {level: (lo[shown], hi[shown]) for level, (lo, hi) in model_bounds.items()})]
    panels += [plots.Series(name, data["series"][:, j], scored.pred[shown, :, j], naive_j[shown],
                            {level: (lo[shown], hi[shown]) for level, (lo, hi) in bounds_j.items()})
               for name, (j, naive_j, bounds_j) in extra.items()]
    plots.save_forecasts(plot_dir / f"forecast-{cell}.png", data["dates"], panels, starts[shown], p.data.input_len,
                         title=f"forecast@{cell}: test windows")
    others = ", ".join(f"{name} {scores[f'{name}_mae']:.2f}" for name in stored.points if name != "naive")
    print(f"evaluate_forecast@{cell}: MAE {scores['mae']:.2f} vs naive {scores['naive_mae']:.2f} "
          f"(ratio {scores['mae_vs_naive']:.3f}), {others}; MASE {scores['mase']:.3f}; "
          f"beats naive at {len(beats)} of {p.data.output_len} horizons, over {len(starts)} test windows"
          + (f"; seeds alone: MAE {scores['seed_mae_min']:.2f}..{scores['seed_mae_max']:.2f}"
             if "seed_mae_min" in scores else "")
          + "".join(f"; {level} % interval coverage {scores[f'model_coverage{level}']:.3f}"
                    for level in conformal.LEVELS if f"model_coverage{level}" in scores)
          + "".join(f"; {name}: MAE {scores[f'{name}_mae']:.2f} vs naive {scores[f'{name}_naive_mae']:.2f}"
                    + "".join(f", {level} % coverage {scores[f'{name}_model_coverage{level}']:.3f}"
                              for level in conformal.LEVELS if f"{name}_model_coverage{level}" in scores)
                    for name in extra))
