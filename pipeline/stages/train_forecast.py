"""train_forecast@<cell>: fit the seq2seq forecaster on per-window normalised prices."""

from __future__ import annotations

from pathlib import Path

from pipeline import artifacts
from pipeline.models.store import save_model
from pipeline.params import Params
from pipeline.training import forecast_job
from pipeline.training import hooks as training_hooks
from pipeline.training.loop import Job, fit


def setup(params: Params, cell: str) -> tuple[Job, dict]:
    """The training job for one cell, and the config saved beside its parameters."""
    p = params.forecast
    data = artifacts.read_npz(Path(p.paths.prepared) / "windows.npz")
    heldout_starts = data["test_starts"] if p.train.heldout_loss else None
    return forecast_job.make_job(p, cell, data["series"], data["train_starts"], f"train_forecast@{cell}",
                                 heldout_starts)


def run(params: Params, cell: str) -> None:
    p = params.forecast
    job, config = setup(params, cell)
    hooks = training_hooks.for_stage("forecast", p, cell, job.options.desc, config)
    state, history = fit(job, hooks)
    save_model(Path(p.paths.models) / cell, state.params, config)
    print(f"{job.options.desc}: loss {history[-1]['loss']:.4f} (normalised {p.train.loss.upper()})")
