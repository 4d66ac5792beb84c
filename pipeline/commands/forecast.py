"""``rnnpipe forecast``: the next horizon from the latest stored prices.

    rnnpipe forecast models/forecast/lstm                  # prints the table
    rnnpipe forecast models/forecast/gru --out forecasts/gru --png

Reads the prepared series (``data/prepared/forecast``: every stored day, gaps filled
as params.yaml says), takes the last ``input_len`` days the model was trained on,
and forecasts the ``output_len`` days after the last stored one, with the model's 80 %
and 95 % intervals (split conformal, from days the model's calibration twins did not
see; their coverage over the whole history is in metrics/backtest.json).
``--out PREFIX`` writes ``PREFIX.csv`` (date, forecast, lo80, hi80, lo95, hi95, naive)
and ``PREFIX.json``, and with ``--png`` a plot of the recent history, the forecast and
its bands. A model that forecasts several series (``forecast.data.targets``: EUR beside
USD) gives each the same: its own columns (``close_EUR_forecast``, ``close_EUR_lo80``, ...),
its entry under ``series`` in the JSON, and its own panel. Refresh the data first with
``dvc repro -f download@forecast && dvc repro prepare_forecast``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from pipeline import artifacts
from pipeline.evaluation import plots
from pipeline.inference import forecasting
from pipeline.models.store import CheckpointError


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rnnpipe forecast", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a model directory written by train_forecast, e.g. models/forecast/gru")
    ap.add_argument("--prepared", default="data/prepared/forecast",
                    help="the prepared series: windows.npz + meta.json (default: %(default)s)")
    ap.add_argument("--out", metavar="PREFIX", help="write PREFIX.csv and PREFIX.json (and PREFIX.png with --png)")
    ap.add_argument("--png", action="store_true", help="with --out: also plot history and forecast")
    return ap


def last_stored_day(prepared: str | Path) -> str:
    """The last day of the prepared price series (ISO date)."""
    return str(artifacts.read_npz(Path(prepared) / "windows.npz")["dates"][-1])


def forecast(model_dir: str | Path, prepared: str | Path) -> tuple[dict, tuple]:
    """``({"model", "last_day", "dates", "forecast", "naive", "intervals", "series"}, plot
    inputs)`` for the days after the last stored one. ``forecast``, ``naive`` and
    ``intervals`` are the first series'; ``series`` maps every forecast series' name to its
    own ``{"forecast", "naive", "intervals"}``. ``intervals`` maps ``"80"`` and ``"95"`` to
    ``{"lo", "hi"}`` lists (empty for a model saved without widths). The plot inputs are
    ``(dates, future days, one plots.Series per forecast series)``."""
    loaded = forecasting.load(model_dir)
    prepared = Path(prepared)
    forecasting.check(loaded, str(prepared), features=artifacts.read_json(prepared / "meta.json")["features"])
    data = artifacts.read_npz(prepared / "windows.npz")
    series, dates, n = data["series"], data["dates"], loaded.input_len
    if len(series) < n:
        raise CheckpointError(f"{prepared}: {len(series)} days, fewer than the model's {n}-day input")
    inputs = series[-n:][None]
    every = forecasting.predict(loaded, inputs)[0]
    panels, each = [], {}
    for j, name in enumerate(loaded.targets):
        pred = every[:, j]
        bands = {level: (lo[0], hi[0])
                 for level, (lo, hi) in forecasting.intervals(loaded, inputs, pred[None], series=j).items()}
        panels.append(plots.Series(name, series[:, j], pred, float(series[-1, j]), bands))
        each[name] = {"forecast": [round(float(v), 2) for v in pred], "naive": round(float(series[-1, j]), 2),
                      "intervals": {str(level): {"lo": [round(float(v), 2) for v in lo],
                                                 "hi": [round(float(v), 2) for v in hi]}
                                    for level, (lo, hi) in bands.items()}}
    last = dt.date.fromisoformat(str(dates[-1]))
    future = [last + dt.timedelta(days=h) for h in range(1, len(every) + 1)]
    first = each[loaded.targets[0]]
    result = {"model": str(model_dir), "last_day": last.isoformat(), "dates": [d.isoformat() for d in future],
              "forecast": first["forecast"], "naive": first["naive"], "networks": len(loaded.members),
              "intervals": first["intervals"], "series": each}
    return result, (dates, future, panels)


def write(model_dir: str | Path, prepared: str | Path, prefix: str | Path, png: bool = False) -> dict:
    """The forecast as ``PREFIX.csv`` (date, forecast, interval bounds, naive) and
    ``PREFIX.json``, and with ``png`` a plot of the recent history, the forecast and its
    bands; returns the JSON's content."""
    result, (dates, future, panels) = forecast(model_dir, prepared)
    prefix = Path(prefix)
    artifacts.write_csv(prefix.with_suffix(".csv"), rows(result))
    artifacts.write_json(prefix.with_suffix(".json"), result)
    if png:
        plots.save_future(prefix.with_suffix(".png"), dates, panels, future,
                          title=f"{model_dir}: {len(future)} days after {result['last_day']}")
    return result


def rows(result: dict) -> list[dict]:
    """One row per day: date, forecast, ``lo<level>``/``hi<level>`` per interval, naive;
    then the same for every other forecast series, each column prefixed by its name."""
    out = []
    names = list(result.get("series", {}))[1:]
    for i, d in enumerate(result["dates"]):
        row = {"date": d}
        for prefix, one in [("", result), *((f"{name}_", result["series"][name]) for name in names)]:
            row[f"{prefix}forecast"] = one["forecast"][i]
            for level, band in one["intervals"].items():
                row.update({f"{prefix}lo{level}": band["lo"][i], f"{prefix}hi{level}": band["hi"][i]})
            row[f"{prefix}naive"] = one["naive"]
        out.append(row)
    return out


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.png and not args.out:
        parser().error("--png needs --out PREFIX")
    if args.out:
        result = write(args.model, args.prepared, args.out, args.png)
        prefix = Path(args.out)
        print(f"forecast: {len(result['dates'])} days after {result['last_day']} -> {prefix}.csv, {prefix}.json"
              + (f", {prefix}.png" if args.png else ""))
    else:
        result, _ = forecast(args.model, args.prepared)
        table = rows(result)
        print(",".join(table[0]))
        for r in table:
            print(",".join(v if isinstance(v, str) else f"{v:.2f}" for v in r.values()))
    return 0
