"""Training machinery shared by the three workloads.

A loss function has one signature everywhere::

    loss_fn(params, batch, carry, key, train) -> (mean_loss, (carry, stats))

``carry`` is the recurrent state carried between batches (the char LM's truncated BPTT)
or ``None``; ``stats`` holds the loss ``sum`` and the ``count`` it is averaged over, so
evaluation can average exactly across batches of unequal padding. ``train_step`` and
``eval_step`` are jitted once per batch shape; configuration is bound by closure.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state
from tqdm.auto import tqdm

from pipeline import parallel
from pipeline.curves import Curves
from pipeline.errors import PipelineError
from pipeline.models.rnn import initial_carries
from pipeline.resume import Checkpoints


class TrainState(train_state.TrainState):
    """Flax's train state plus the non-finite guard's counters (int32 scalars, on device):
    ``skipped`` steps in all, and ``bad_run``, the current run of them in a row."""

    skipped: jax.Array
    bad_run: jax.Array


class DivergedError(PipelineError, RuntimeError):
    """Training produced a non-finite loss or gradient too many steps in a row."""


LossFn = Callable[..., tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]


def make_schedule(learning_rate: float, schedule: str = "constant", steps: int = 0) -> optax.Schedule:
    """The learning rate as a function of the update count.

    ``luong234`` is tensorflow/nmt's schedule: the rate halves four times, evenly spaced
    over the last third of ``steps``; ``cosine`` decays it to a tenth by ``steps``.
    """
    if schedule == "luong234":
        start = 2 * steps // 3
        return optax.exponential_decay(learning_rate, transition_steps=max(1, (steps - start) // 4),
                                       decay_rate=0.5, transition_begin=start, staircase=True)
    if schedule == "cosine":
        return optax.cosine_decay_schedule(learning_rate, max(1, steps), alpha=0.1)
    if schedule == "constant":
        return optax.constant_schedule(learning_rate)
    raise ValueError(f"unknown schedule {schedule!r}")


def make_optimizer(
    learning_rate: float | optax.Schedule,
    clip_norm: float,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    rmsprop_decay: float = 0.9,
    momentum: float = 0.0,
):
    """Global-norm clipping, then Adam, plain SGD or RMSProp, at a constant rate or a
    schedule (:func:`make_schedule`). ``weight_decay`` adds an L2 term to the gradient.
    """
    parts = [optax.clip_by_global_norm(clip_norm)]
    if weight_decay > 0:
        parts.append(optax.add_decayed_weights(weight_decay))
    if optimizer == "adam":
        parts.append(optax.adam(learning_rate))
    elif optimizer == "sgd":
        parts.append(optax.sgd(learning_rate))
    elif optimizer == "rmsprop":
        parts.append(optax.rmsprop(learning_rate, decay=rmsprop_decay, momentum=momentum or None))
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    return optax.chain(*parts)


def masked_xent(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """Summed cross-entropy over positions where ``mask`` is True.

    Args:
        logits: <f32>[batch, time, vocab]; targets: <int32>[batch, time];
        mask: <bool>[batch, time].
    """
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    mask = mask.astype(nll.dtype)
    return {"sum": jnp.sum(nll * mask), "count": jnp.sum(mask)}


def nmt_loss(model, label_smoothing: float = 0.0) -> LossFn:
    """Teacher-forced token cross-entropy; padding beyond ``trg_len`` is masked.

    With ``label_smoothing`` the training loss spreads that much probability mass
    uniformly over the vocabulary; evaluation (``train=False``) always reports the plain
    negative log-likelihood, so validation losses stay comparable across settings.
    """

    def loss_fn(params, batch, carry, key, train):
        trg = batch["trg"]
        logits = model.apply(
            {"params": params}, batch["src"], batch["src_len"], trg[:, :-1], train=train,
            rngs={"dropout": key},
        )
        mask = jnp.arange(trg.shape[1] - 1)[None, :] < batch["trg_len"][:, None]
        stats = masked_xent(logits, trg[:, 1:], mask)
        if train and label_smoothing > 0:
            labels = optax.smooth_labels(jax.nn.one_hot(trg[:, 1:], logits.shape[-1]), label_smoothing)
            smoothed = optax.softmax_cross_entropy(logits, labels)
            total = jnp.sum(smoothed * mask)
            return total / jnp.maximum(stats["count"], 1.0), (carry, stats)
        return stats["sum"] / jnp.maximum(stats["count"], 1.0), (carry, stats)

    return loss_fn


def charlm_loss(model) -> LossFn:
    """Next-character cross-entropy; the carry continues from the previous window.

    ``batch["reset"]`` (a scalar bool) zeroes the carry at an epoch boundary. The
    returned carry is cut from the graph: gradients stop at the window edge.
    """

    def loss_fn(params, batch, carry, key, train):
        zeros = initial_carries(model.cell, model.layers, model.hidden, batch["inputs"].shape[0])
        carry = jax.tree_util.tree_map(
            lambda z, c: jnp.where(batch["reset"], z, c), zeros, carry
        )
        carry, logits = model.apply(
            {"params": params}, batch["inputs"], carry, train=train, rngs={"dropout": key}
        )
        stats = masked_xent(logits, batch["targets"], jnp.ones(batch["targets"].shape, bool))
        carry = jax.lax.stop_gradient(carry)
        return stats["sum"] / stats["count"], (carry, stats)

    return loss_fn


def forecast_loss(model) -> LossFn:
    """Mean absolute error in each window's normalised units.

    Per-window scaling makes targets heavy-tailed (a flat input window followed by a
    jump gives |target| in the hundreds); squared error lets those few windows dominate
    training, absolute error does not, and it is the metric the forecaster is judged by.
    """

    def loss_fn(params, batch, carry, key, train):
        pred = model.apply({"params": params}, batch["inputs"], train=train, rngs={"dropout": key})
        err = jnp.abs(pred - batch["targets"])
        stats = {"sum": jnp.sum(err), "count": jnp.asarray(err.size, jnp.float32)}
        return stats["sum"] / stats["count"], (carry, stats)

    return loss_fn


def make_train_step(loss_fn: LossFn):
    """``train_step(state, batch, carry, key) -> (state, carry, out)``, jitted.

    ``out`` holds the step's ``loss``, the global ``grad_norm`` of its gradient (before
    clipping) and the number of ``tokens`` its loss averages over (target positions).

    A step whose loss or gradient has a NaN or an infinity is skipped: parameters,
    optimizer state, step and carry stay as they were, ``state.skipped`` and
    ``state.bad_run`` count it, and the returned loss and grad_norm are NaN (``fit``
    leaves them out of its averages and stops after too many in a row).
    """

    def train_step(state: TrainState, batch, carry, key):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (new_carry, stats)), grads = grad_fn(state.params, batch, carry, key, True)
        finite = jnp.isfinite(loss)
        for g in jax.tree_util.tree_leaves(grads):
            finite &= jnp.all(jnp.isfinite(g))
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        state = jax.tree_util.tree_map(keep, state.apply_gradients(grads=grads), state)
        state = state.replace(skipped=state.skipped + (~finite).astype(jnp.int32),
                              bad_run=jnp.where(finite, 0, state.bad_run + 1))
        carry = jax.tree_util.tree_map(keep, new_carry, carry)
        out = {"loss": jnp.where(finite, loss, jnp.nan),
               "grad_norm": jnp.where(finite, optax.tree.norm(grads), jnp.nan),
               "tokens": stats["count"]}
        return state, carry, out

    return jax.jit(train_step, donate_argnums=(0,))


def make_eval_step(loss_fn: LossFn):
    """``eval_step(params, batch, carry) -> (carry, stats)``, jitted, no dropout."""

    def eval_step(params, batch, carry):
        _, (carry, stats) = loss_fn(params, batch, carry, jax.random.key(0), False)
        return carry, stats

    return jax.jit(eval_step)


def create_state(model, key: jax.Array, tx, *example_inputs) -> TrainState:
    """Initialise parameters from ``key`` by tracing the model on example inputs."""
    params = model.init({"params": key}, *example_inputs)["params"]
    # Separate int32 buffers: the train step donates the state (a buffer donated twice
    # fails), and a checkpoint restores into this state's dtypes (the step as a Python
    # int would come back as int64).
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                              skipped=jnp.zeros((), jnp.int32), bad_run=jnp.zeros((), jnp.int32))
    return state.replace(step=jnp.zeros((), jnp.int32))


def fit(
    state: TrainState,
    train_step,
    batches: Iterator[dict],
    steps: int,
    key: jax.Array,
    log_every: int,
    evaluate: Callable[[Any], dict[str, float]],
    carry: Any = None,
    desc: str = "train",
    select: str | None = None,
    patience: int = 0,
    devices: list | None = None,
    max_nonfinite: int = 20,
    checkpoints: Checkpoints | None = None,
    learning_rate: Callable[[Any], Any] | None = None,
    curves: Curves | None = None,
) -> tuple[TrainState, list[dict[str, float]]]:
    """Run ``steps`` train steps; every ``log_every`` steps record a history row.

    Step ``s`` uses ``fold_in(key, s)`` for dropout, so the run is a pure function of
    the seed. Each row holds ``step``; since the last row, the mean training ``loss``
    and ``grad_norm`` (before clipping) and the throughput ``tokens_per_s`` (target
    tokens per second of training, evaluation excluded; the first row includes the
    compilation); the ``lr`` of the latest update when ``learning_rate`` (the schedule,
    :func:`make_schedule`) is given; and whatever ``evaluate(params)`` returns. With
    ``curves`` (:mod:`pipeline.curves`) every row is also logged through dvclive.

    With ``select`` (a key of those rows, higher is better) the returned state holds the
    parameters of the best row, not the last; with ``patience > 0`` training also stops
    once that many rows in a row have not improved on the best.

    With more than one device (``devices``, default all of them) and a batch size they
    divide, each batch is sharded across them and the state replicated
    (:mod:`pipeline.parallel`): data parallelism with the same global batch.

    Steps with a non-finite loss or gradient are skipped (see :func:`make_train_step`);
    if ``max_nonfinite`` of them come in a row, the run stops at the next history row
    with :class:`DivergedError`.

    With ``checkpoints`` (:mod:`pipeline.resume`) the run first continues from the newest
    valid checkpoint, replaying ``batches`` up to its step, and then saves one every
    ``checkpoints.every`` steps and at the end. SIGTERM or SIGINT saves one at the
    current step and stops with :class:`Interrupted`. A resumed run ends exactly where
    an uninterrupted one would.
    """
    run = _Run(state, carry, select)
    if checkpoints is not None and (restored := checkpoints.restore(run.tree())) is not None:
        run.load(*restored)
        for _ in range(run.step):  # the data position: replay the stream up to the step
            next(batches)
        tqdm.write(f"{desc}: resuming at step {run.step} from {checkpoints.directory}")
    if curves is not None:
        curves.begin(run.history)
        tqdm.write(f"{desc}: training curves in {curves.directory}")
    started = run.since = time.perf_counter()
    bar = tqdm(total=steps, initial=run.step, desc=desc, unit="step", mininterval=2.0, disable=None)
    mesh, first = None, True
    with _stop_signals(checkpoints is not None) as stop:
        while not run.done and run.step < steps:
            step = run.step + 1
            batch = next(batches)
            if first and (mesh := parallel.mesh_for(batch, devices)) is not None:
                tqdm.write(f"{desc}: data parallel over {mesh.size} devices")
                run.state = parallel.replicate(run.state, mesh)
                run.carry = None if run.carry is None else parallel.shard(run.carry, mesh)
            first = False
            if mesh is not None:
                batch = parallel.shard(batch, mesh)
            run.state, run.carry, out = train_step(run.state, batch, run.carry, jax.random.fold_in(key, step))
            run.step = step
            run.accumulate(out)
            bar.update(1)
            if step % log_every == 0 or step == steps:
                _check_finite(run.state, step, max_nonfinite, desc)
                row = run.log_row(evaluate, desc, patience, steps, learning_rate)
                if curves is not None:
                    curves.log(row)
                run.since = time.perf_counter()  # evaluation and logging are not training time
            run.done = run.done or step == steps
            if checkpoints is not None and (run.done or step % checkpoints.every == 0 or stop):
                checkpoints.save(step, run.tree(), run.meta())
            if stop:
                raise Interrupted(f"{desc}: stopped by {stop[0]} at step {step}/{steps}; the checkpoint "
                                  f"in {checkpoints.directory} holds it: run the stage again to resume", stop[0])
    bar.close()
    seconds = time.perf_counter() - started
    done = run.history[-1]["step"] if run.history else steps
    tqdm.write(f"{desc}: {done} steps in {seconds:.0f}s ({done / max(seconds, 1e-9):.1f} steps/s)")
    state = run.state
    if run.best_params is not None:
        chosen = max(run.history, key=lambda r: r[select])
        tqdm.write(f"{desc}: keeping step {chosen['step']} ({select} {run.best:.4f})")
        state = state.replace(params=run.best_params)
    return state, run.history


class Interrupted(PipelineError, RuntimeError):
    """SIGTERM or SIGINT stopped training after a checkpoint was saved. The command exits
    with the shell's code for that signal (143 or 130)."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.exit_code = 128 + signal.Signals[signal_name].value


class _Run:
    """Everything :func:`fit` carries from step to step, and so everything a checkpoint holds."""

    def __init__(self, state: TrainState, carry: Any, select: str | None):
        self.state, self.carry, self.select = state, carry, select
        self.step, self.done, self.stale = 0, False, 0
        self.sums = _zero_sums()
        self.since = 0.0  # perf_counter when this row's training time began
        self.history: list[dict[str, float]] = []
        self.best, self.best_params = -float("inf"), None

    def accumulate(self, out: dict[str, jax.Array]) -> None:
        """Add one step's output to the row's sums: on device, so no sync per step."""
        self.sums = _accumulate(self.sums, out)

    def log_row(self, evaluate, desc: str, patience: int, steps: int, learning_rate=None) -> dict[str, float]:
        sums = {k: v.item() for k, v in jax.device_get(self.sums).items()}  # waits for the last step
        seconds = time.perf_counter() - self.since
        finite = max(sums["finite"], 1)
        row = {"step": self.step, "loss": sums["loss"] / finite, "grad_norm": sums["grad_norm"] / finite}
        if learning_rate is not None:  # the rate of the latest update (skipped steps made none)
            row["lr"] = float(learning_rate(max(int(self.state.step) - 1, 0)))
        row["tokens_per_s"] = sums["tokens"] / max(seconds, 1e-9)
        row.update(evaluate(self.state.params))
        self.history.append(row)
        shown = " ".join(f"{k} {v:,.0f}" if k == "tokens_per_s" else f"{k} {v:.4g}"
                         for k, v in row.items() if k != "step")
        tqdm.write(f"{desc} step {self.step}/{steps}: {shown}")
        self.sums = _zero_sums()
        if self.select is None:
            return row
        if row[self.select] > self.best:
            # a copy: the next train step donates (and so invalidates) the state's buffers
            self.best, self.best_params, self.stale = row[self.select], jax.tree_util.tree_map(jnp.copy, self.state.params), 0
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
            tree["best_params"] = self.best_params if self.best_params is not None else self.state.params
        return tree

    def meta(self) -> dict[str, Any]:
        return {"step": self.step, "done": self.done, "stale": self.stale, "history": self.history,
                "best": None if self.best_params is None else self.best}

    def load(self, step: int, tree: dict[str, Any], meta: dict[str, Any]) -> None:
        self.step, self.done, self.stale, self.history = step, meta["done"], meta["stale"], meta["history"]
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
    handler = lambda signum, frame: stop.append(signal.Signals(signum).name)  # noqa: E731
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
