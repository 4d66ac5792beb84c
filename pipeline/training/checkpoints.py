"""Training checkpoints through orbax: working state that lets a killed run continue.

A checkpoint holds everything :func:`pipeline.training.loop.fit` needs to continue exactly as
if it had never stopped: parameters, optimizer state, step and the non-finite counters
(the train state), the carried RNN state of a char LM, the running loss since the last
history row, the history rows, the best parameters kept for ``select``, and the step
itself, from which the dropout key (``fold_in(seed key, step)``) and the data position
(the batch stream is replayed up to it) follow.

Checkpoints live under ``<workload>.paths.checkpoints/<stage>@<cell>/<fingerprint>/``,
where the fingerprint hashes the workload's params, the prepared data the run trains
on and the package's code: a changed parameter, dataset or module starts afresh instead
of resuming someone else's run. They are not DVC outputs (the finished model is); ``rm -r checkpoints/`` forgets
them. Each one carries the sha256 of its own state; one that fails to restore or whose
bytes no longer match (a truncated or corrupted file) is skipped with a warning, and the
previous one is used.

Beside its checkpoints, a run's folder holds ``config.json``: what the train stage saves
with the finished model (architecture, vocabulary). So a checkpoint can be used like a
model directory: :func:`load_params` reads the parameters of any step, and
``rnnpipe generate checkpoints/charlm/train_charlm@gru --step 200`` samples from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from tqdm.auto import tqdm

from pipeline import artifacts
from pipeline.errors import PipelineError
from pipeline.training import parallel
from pipeline.training.loop import Hook, Run

# What a checkpoint holds; part of the fingerprint, so a change to it (a new accumulator,
# say) starts afresh instead of failing to restore the old ones.
FORMAT = 3
CONFIG = "config.json"


class NoCheckpointError(PipelineError, FileNotFoundError):
    """A folder that holds no usable checkpoint; the message names it and what it has."""


def run_folder(path: str | Path) -> Path:
    """A run's checkpoint folder: ``path`` itself, or, for a folder of runs
    (``checkpoints/charlm/train_charlm@gru``), the most recently written one in it."""
    path = Path(path)
    if (path / CONFIG).is_file():
        return path
    runs = sorted((p for p in path.glob(f"*/{CONFIG}")), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise NoCheckpointError(f"{path}: no training checkpoints here (a run folder holds {CONFIG} and "
                                "numbered steps; train first, with checkpoint_every below the steps)")
    return runs[-1].parent


def load_params(path: str | Path, step: int | None = None) -> tuple[int, Any, dict[str, Any]]:
    """``(step, params, config)`` from a run's checkpoint folder (:func:`run_folder`): the
    checkpoint of ``step``, or the newest; its sha256 is checked."""
    folder = run_folder(path)
    manager = ocp.CheckpointManager(folder.absolute(), item_names=("state", "meta"))
    steps = sorted(manager.all_steps())
    if not steps or (step is not None and step not in steps):
        raise NoCheckpointError(f"{folder}: no checkpoint of step {step}; it has steps {steps}"
                                if step is not None else f"{folder}: no checkpoints saved yet")
    step = steps[-1] if step is None else step
    got = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                        meta=ocp.args.JsonRestore()))
    tree, meta = jax.device_get(got.state), dict(got.meta)
    if meta.get("sha256") != _digest(tree):
        raise NoCheckpointError(f"{folder / str(step)}: its contents do not match the sha256 recorded with it")
    return step, tree["state"]["params"], artifacts.read_json(folder / CONFIG)


def fingerprint(config: Any, data_files: list[Path]) -> str:
    """A short digest of a run's configuration (JSON, dataclasses allowed), the checkpoint
    :data:`FORMAT` and its data files."""
    as_json = lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o)
    h = hashlib.sha256(json.dumps({"format": FORMAT, "config": config}, sort_keys=True, default=as_json).encode())
    for path in sorted(data_files):
        h.update(path.as_posix().encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


_PACKAGE = Path(__file__).resolve().parents[1]


def code_digest(package: Path = _PACKAGE) -> str:
    """sha256 over the package's source files (``.py``, ``.cc``), names and bytes."""
    h = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".cc") and p.is_file()):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def for_run(root: str | Path, run: str, config: Any, data_dir: str | Path, every: int,
            saved: dict[str, Any] | None = None, keep: int = 2) -> Checkpoints:
    """The checkpoints of one training run: ``root/run/<fingerprint>``, where the
    fingerprint covers ``config``, every file under ``data_dir`` and the code
    (:func:`code_digest`). DVC reruns a train stage whose params and data are unchanged
    only when its code changed (or with ``-f``): resuming a checkpoint that other code
    wrote would hand back the old model, so such a run starts afresh. ``saved`` (the
    finished model's config) is written beside the checkpoints as ``config.json``; the
    ``keep`` newest checkpoints are kept."""
    files = [f for f in Path(data_dir).rglob("*") if f.is_file()]
    return Checkpoints(Path(root) / run / fingerprint({"run": config, "code": code_digest()}, files), every,
                       keep=keep, saved=saved)


def _digest(tree: Any) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes (a 0-d array and a numpy
    scalar of the same value hash alike, as orbax may hand back either)."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape}:".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Checkpoints(Hook):
    """Save and restore one run's checkpoints in ``directory`` (the ``keep`` newest are kept).

    As a :class:`pipeline.training.loop.Hook` it resumes the run from the newest valid
    checkpoint, saves one every ``every`` steps, at the end, and when a signal stops the
    run.
    """

    saves_on_stop = True

    def __init__(self, directory: str | Path, every: int, keep: int = 2, saved: dict[str, Any] | None = None):
        self.directory = Path(directory).absolute()
        self.every, self.saved = every, saved
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False, create=True)
        if jax.process_count() > 1:  # several hosts: each saves its own copy of the replicated state
            self.directory.mkdir(parents=True, exist_ok=True)  # orbax won't, with active_processes
            options.multiprocessing_options, options.create = parallel.process_options(), False
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def begin(self, run: Run, desc: str) -> None:
        if self.saved is not None:
            artifacts.write_json(self.directory / CONFIG, self.saved)
        if (restored := self.restore(run.tree())) is not None:
            run.load(*restored)
            tqdm.write(f"{desc}: resuming at step {run.step} from {self.directory}")

    def after_step(self, run: Run, stopping: bool) -> None:
        if run.done or run.step % self.every == 0 or stopping:
            self.save(run.step, run.tree(), run.meta())

    def save(self, step: int, tree: Any, meta: dict[str, Any]) -> None:
        """Write ``tree`` (arrays) and ``meta`` (JSON) as checkpoint ``step``, atomically."""
        tree = serialization.to_state_dict(parallel.to_host(tree))
        meta = {**meta, "sha256": _digest(tree)}
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                        meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def restore(self, template: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """``(step, tree, meta)`` of the newest valid checkpoint, ``tree`` shaped like
        ``template``; None when there is none."""
        shaped = lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype)
        abstract = jax.tree_util.tree_map(shaped, serialization.to_state_dict(template))
        for step in sorted(self.manager.all_steps(), reverse=True):
            where = self.directory / str(step)
            try:
                got = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
                state, meta = jax.device_get(got.state), dict(got.meta)
                if meta.pop("sha256", None) != _digest(state):
                    raise ValueError("its contents do not match the sha256 recorded with it")
            except Exception as err:  # orbax/tensorstore raise many types on damaged files
                tqdm.write(f"warning: {where}: skipping an unreadable checkpoint ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:200]}); trying the one before it")
                shutil.rmtree(where, ignore_errors=True)
                self.manager.reload()
                continue
            return step, serialization.from_state_dict(template, state), meta
        return None
