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
its bands. Refresh the data first with
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
    """``({"model", "last_day", "dates", "forecast", "naive", "intervals"}, plot inputs)``
    for the days after the last stored one; ``intervals`` maps ``"80"`` and ``"95"`` to
    ``{"lo", "hi"}`` lists (empty for a model saved without widths). The plot inputs are
    ``(dates, close, future days, forecast, intervals)``."""
    loaded = forecasting.load(model_dir)
    prepared = Path(prepared)
    forecasting.check(loaded, str(prepared), features=artifacts.read_json(prepared / "meta.json")["features"])
    data = artifacts.read_npz(prepared / "windows.npz")
    series, dates, n = data["series"], data["dates"], loaded.input_len
    if len(series) < n:
        raise CheckpointError(f"{prepared}: {len(series)} days, fewer than the model's {n}-day input")
    inputs = series[-n:][None]
    every = forecasting.predict(loaded, inputs)[0]
    pred = every[:, 0]
    bands = {
        level: (lo[0], hi[0]) for level, (lo, hi) in forecasting.intervals(loaded, inputs, pred[None]).items()
    }  # the first forecast series; the others go to the JSON as "also"
    last = dt.date.fromisoformat(str(dates[-1]))
    future = [last + dt.timedelta(days=h) for h in range(1, len(pred) + 1)]
    result = {"model": str(model_dir), "last_day": last.isoformat(), "dates": [d.isoformat() for d in future],
              "forecast": [round(float(v), 2) for v in pred], "naive": round(float(series[-1, 0]), 2),
              "networks": len(loaded.members),
              "intervals": {str(level): {"lo": [round(float(v), 2) for v in lo], "hi": [round(float(v), 2) for v in hi]}
                            for level, (lo, hi) in bands.items()}}
    if loaded.outputs > 1:
        result["also"] = {
            loaded.features[j]: [round(float(v), 2) for v in every[:, j]] for j in range(1, loaded.outputs)
        }
    return result, (dates, series[:, 0], future, pred, bands)


def write(model_dir: str | Path, prepared: str | Path, prefix: str | Path, png: bool = False) -> dict:
    """The forecast as ``PREFIX.csv`` (date, forecast, interval bounds, naive) and
    ``PREFIX.json``, and with ``png`` a plot of the recent history, the forecast and its
    bands; returns the JSON's content."""
    result, (dates, close, future, pred, bands) = forecast(model_dir, prepared)
    prefix = Path(prefix)
    artifacts.write_csv(prefix.with_suffix(".csv"), rows(result))
    artifacts.write_json(prefix.with_suffix(".json"), result)
    if png:
        plots.save_future(prefix.with_suffix(".png"), dates, close, future, pred, result["naive"], bands,
                          title=f"{model_dir}: {len(pred)} days after {result['last_day']}")
    return result


def rows(result: dict) -> list[dict]:
    """One row per day: date, forecast, ``lo<level>``/``hi<level>`` per interval, naive."""
    out = []
    for i, (d, f) in enumerate(zip(result["dates"], result["forecast"], strict=True)):
        row = {"date": d, "forecast": f}
        for level, band in result["intervals"].items():
            row.update({f"lo{level}": band["lo"][i], f"hi{level}": band["hi"][i]})
        out.append({**row, "naive": result["naive"]})
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
