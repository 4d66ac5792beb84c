"""The training loop: :func:`fit` runs a :class:`Job` and calls its hooks.

A train stage builds a :class:`Job` (state, step, batches, key, :class:`FitOptions`,
evaluation) and passes the hooks it wants: :class:`pipeline.training.checkpoints.Checkpoints`
(resume a killed run, save on SIGTERM) and :class:`pipeline.training.curves.Curves`
(dvclive). Device placement is decided before the first step
(:mod:`pipeline.training.parallel`); the loop itself only steps, accumulates, logs rows
and keeps the best.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from pipeline import device
from pipeline.errors import PipelineError
from pipeline.training import parallel
from pipeline.training.steps import TrainState


class DivergedError(PipelineError, RuntimeError):
    """Training produced a non-finite loss or gradient too many steps in a row."""


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How long to train, when to log, what to keep (a workload's ``train`` params).

    ``batch_size`` is the global batch, which decides data parallelism before the loop.
    With ``select`` (a history key, higher is better) the best row's parameters are
    kept, not the last; with ``patience > 0`` training also stops once that many rows
    in a row have not improved on it. ``max_nonfinite`` skipped steps in a row stop the
    run with :class:`DivergedError`.
    """

    steps: int
    log_every: int
    batch_size: int
    desc: str = "train"
    select: str | None = None
    patience: int = 0
    max_nonfinite: int = 20


def no_evaluation(params: Any) -> dict[str, float]:
    return {}


@dataclasses.dataclass
class Job:
    """One training run as a train stage sets it up: everything :func:`fit` needs.

    ``train_step`` is :func:`pipeline.training.steps.make_train_step`'s; ``evaluate``
    maps parameters to a history row's held-out values; ``carry`` is the recurrent
    state carried between batches (char LM) or None; ``learning_rate`` is the schedule
    (:func:`pipeline.training.optim.make_schedule`), logged as ``lr``.
    """

    state: TrainState
    train_step: Callable
    batches: Iterator[dict]
    key: jax.Array
    options: FitOptions
    evaluate: Callable[[Any], dict[str, float]] = no_evaluation
    carry: Any = None
    learning_rate: Callable[[Any], Any] | None = None


class Hook:
    """Called by :func:`fit` around the loop; each method does nothing unless overridden.

    ``begin`` runs before the first step and may restore the run
    (:meth:`Run.load`); ``after_row`` sees every history row; ``record`` runs after
    every step, for every hook before any ``after_step``, and may keep JSON values in
    ``run.extras``, which the step's checkpoint then holds; ``after_step`` runs after
    every step, with ``stopping`` true when a signal asked the run to stop. A hook with
    ``saves_on_stop`` makes the loop catch SIGTERM/SIGINT and stop after the step.
    """

    saves_on_stop = False

    def begin(self, run: Run, desc: str) -> None:
        pass

    def after_row(self, row: dict[str, float]) -> None:
        pass

    def record(self, run: Run) -> None:
        pass

    def after_step(self, run: Run, stopping: bool) -> None:
        pass


def fit(job: Job, hooks: Sequence[Hook] = (), devices: list | None = None) -> tuple[TrainState, list[dict[str, float]]]:
    """Run ``job.options.steps`` train steps; every ``log_every`` steps record a history row.

    Step ``s`` uses ``fold_in(key, s)`` for dropout, so the run is a pure function of
    the seed. Each row holds ``step``; since the last row, the mean training ``loss``
    and ``grad_norm`` (before clipping) and the throughput ``tokens_per_s`` (target
    tokens per second of training, evaluation excluded; the first row includes the
    compilation); the ``lr`` of the latest update; and whatever ``job.evaluate``
    returns. Steps with a non-finite loss or gradient are skipped
    (:func:`pipeline.training.steps.make_train_step`).

    Hooks run in order: put the checkpoints before the curves, so the curves start from
    a restored history. A resumed run replays ``job.batches`` up to its step and ends
    exactly where an uninterrupted one would. With more than one device (``devices``,
    default all of them) dividing the batch, each batch is sharded across them and the
    state replicated: data parallelism with the same global batch.
    """
    o = job.options
    run = Run(job.state, job.carry, o.select)
    for hook in hooks:
        hook.begin(run, o.desc)
    for _ in range(run.step):  # the data position: replay the stream up to the step
        next(job.batches)
    mesh = parallel.mesh_for(o.batch_size, devices)
    tqdm.write(f"{o.desc}: training on {device.describe(devices or jax.devices())}")
    if mesh is not None:
        tqdm.write(f"{o.desc}: data parallel over {mesh.size} devices")
        run.state = parallel.replicate(run.state, mesh)
        run.carry = None if run.carry is None else parallel.shard(run.carry, mesh)
    started = run.since = time.perf_counter()
    bar = tqdm(total=o.steps, initial=run.step, desc=o.desc, unit="step", mininterval=2.0, disable=None)
    with _stop_signals(any(h.saves_on_stop for h in hooks)) as stop:
        while not run.done and run.step < o.steps:
            step = run.step + 1
            batch = next(job.batches)
            if mesh is not None:
                batch = parallel.shard(batch, mesh)
            run.state, run.carry, out = job.train_step(run.state, batch, run.carry, jax.random.fold_in(job.key, step))
            run.step = step
            run.accumulate(out)
            bar.update(1)
            if step % o.log_every == 0 or step == o.steps:
                _check_finite(run.state, step, o.max_nonfinite, o.desc)
                row = run.log_row(job.evaluate, o, job.learning_rate)
                for hook in hooks:
                    hook.after_row(row)
                run.since = time.perf_counter()  # evaluation and logging are not training time
            run.done = run.done or step == o.steps
            for hook in hooks:
                hook.record(run)
            for hook in hooks:
                hook.after_step(run, bool(stop))
            if stop:
                saved = "; ".join(f"the checkpoint in {h.directory} holds it" for h in hooks if h.saves_on_stop)
                raise Interrupted(f"{o.desc}: stopped by {stop[0]} at step {step}/{o.steps}; {saved}: "
                                  "run the stage again to resume", stop[0])
    bar.close()
    seconds = time.perf_counter() - started
    done = run.history[-1]["step"] if run.history else o.steps
    tqdm.write(f"{o.desc}: {done} steps in {seconds:.0f}s ({done / max(seconds, 1e-9):.1f} steps/s)")
    state = run.state.replace(params=run.state.weights)  # the moving average, when training kept one
    if run.best_params is not None:
        chosen = max(run.history, key=lambda r: r[o.select])
        tqdm.write(f"{o.desc}: keeping step {chosen['step']} ({o.select} {run.best:.4f})")
        state = state.replace(params=run.best_params)
    if jax.process_count() > 1:  # several hosts: the caller gets host arrays it can save
        state = parallel.to_host(state)
    return state, run.history


class Interrupted(PipelineError, RuntimeError):
    """SIGTERM or SIGINT stopped training after a checkpoint was saved. The command exits
    with the shell's code for that signal (143 or 130)."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.exit_code = 128 + signal.Signals[signal_name].value


class Run:
    """Everything :func:`fit` carries from step to step, and so everything a checkpoint holds."""

    def __init__(self, state: TrainState, carry: Any, select: str | None):
        self.state, self.carry, self.select = state, carry, select
        self.step, self.done, self.stale = 0, False, 0
        self.sums = _zero_sums()
        self.since = 0.0  # perf_counter when this row's training time began
        self.history: list[dict[str, float]] = []
        self.extras: dict[str, Any] = {}  # what hooks keep across a resume (Hook.record)
        self.best, self.best_params = -float("inf"), None

    def accumulate(self, out: dict[str, jax.Array]) -> None:
        """Add one step's output to the row's sums: on device, so no sync per step."""
        self.sums = _accumulate(self.sums, out)

    def log_row(self, evaluate, options: FitOptions, learning_rate=None) -> dict[str, float]:
        desc, patience, steps = options.desc, options.patience, options.steps
        sums = {k: v.item() for k, v in jax.device_get(self.sums).items()}  # waits for the last step
        seconds = time.perf_counter() - self.since
        finite = max(sums["finite"], 1)
        row = {"step": self.step, "loss": sums["loss"] / finite, "grad_norm": sums["grad_norm"] / finite}
        if learning_rate is not None:  # the rate of the latest update (skipped steps made none)
            row["lr"] = float(learning_rate(max(int(self.state.step) - 1, 0)))
        row["tokens_per_s"] = sums["tokens"] / max(seconds, 1e-9)
        row.update(evaluate(self.state.weights))
        self.history.append(row)
        shown = " ".join(f"{k} {v:,.0f}" if k == "tokens_per_s" else f"{k} {v:.4g}"
                         for k, v in row.items() if k != "step")
        tqdm.write(f"{desc} step {self.step}/{steps}: {shown}")
        self.sums = _zero_sums()
        if self.select is None:
            return row
        if row[self.select] > self.best:
            # a copy: the next train step donates (and so invalidates) the state's buffers
            self.best, self.best_params, self.stale = (
                row[self.select],
                jax.tree_util.tree_map(jnp.copy, self.state.weights),
                0,
            )
        else:
            self.stale += 1
        if patience and self.stale >= patience:
            tqdm.write(f"{desc}: stopping at step {self.step}: {self.select} has not improved "
                       f"for {patience} evaluations")
            self.done = True
        return row

    def tree(self) -> dict[str, Any]:
        tree = {"state": self.state, "sums": self.sums}
        if self.carry is not None:
            tree["carry"] = self.carry
        if self.select is not None:  # a placeholder until the first row has been kept
            tree["best_params"] = self.best_params if self.best_params is not None else self.state.weights
        return tree

    def meta(self) -> dict[str, Any]:
        return {"step": self.step, "done": self.done, "stale": self.stale, "history": self.history,
                "extras": self.extras, "best": None if self.best_params is None else self.best}

    def load(self, step: int, tree: dict[str, Any], meta: dict[str, Any]) -> None:
        self.step, self.done, self.stale, self.history = step, meta["done"], meta["stale"], meta["history"]
        self.extras = meta.get("extras", {})  # none in a checkpoint from before extras
        self.state, self.sums = tree["state"], tree["sums"]
        self.carry = tree.get("carry", self.carry)
        if meta["best"] is not None:
            self.best, self.best_params = meta["best"], tree["best_params"]


def _zero_sums() -> dict[str, jax.Array]:
    """A history row's running sums: loss and grad_norm over the ``finite`` steps, and
    the ``tokens`` of all of them."""
    return {"loss": jnp.float32(0.0), "grad_norm": jnp.float32(0.0), "finite": jnp.int32(0),
            "tokens": jnp.float32(0.0)}


@jax.jit
def _accumulate(sums: dict[str, jax.Array], out: dict[str, jax.Array]) -> dict[str, jax.Array]:
    finite = jnp.isfinite(out["loss"])
    return {"loss": sums["loss"] + jnp.where(finite, out["loss"], 0.0),
            "grad_norm": sums["grad_norm"] + jnp.where(finite, out["grad_norm"], 0.0),
            "finite": sums["finite"] + finite, "tokens": sums["tokens"] + out["tokens"]}


@contextlib.contextmanager
def _stop_signals(enabled: bool):
    """While training, SIGTERM/SIGINT only set a flag (the yielded list gets the signal's
    name), so the loop can finish its step and save a checkpoint before stopping."""
    stop: list[str] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    handler = lambda signum, frame: stop.append(signal.Signals(signum).name)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _check_finite(state: TrainState, step: int, limit: int, desc: str) -> None:
    """Report skipped steps; raise :class:`DivergedError` after ``limit`` in a row."""
    skipped, run = int(state.skipped), int(state.bad_run)
    if run >= limit:
        raise DivergedError(
            f"{desc}: the loss or gradient was NaN or infinite at every step from {step - run + 1} to "
            f"step {step} ({run} in a row, limit {limit}; {skipped} skipped in all), so training stopped. "
            "Likely causes: a learning rate too high for this model (lower train.learning_rate, or "
            "train.clip_norm), or NaN/inf values in the prepared data.")
    if skipped:
        tqdm.write(f"{desc}: {skipped} step(s) skipped so far for a non-finite loss or gradient")
