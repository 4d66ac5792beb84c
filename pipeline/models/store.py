"""The model store: the only module that reads or writes finished model directories.

(Training checkpoints, the working state a killed run resumes from, are
:mod:`pipeline.training.checkpoints`.)

A model directory is self-describing: ``config.json`` holds the constructor arguments
and everything else needed to run the model (vocabularies, feature names), and
``params.msgpack`` holds the Flax parameters. The directory is built beside its target
and swapped in whole, so a failed save never costs the old model.

Finished models use Flax's msgpack serialisation rather than an orbax checkpoint because
its bytes are a pure function of the parameters: orbax writes timestamps and
randomly named shard files, so every rerun would change the DVC hash of an identical
model, dirty ``dvc.lock`` and force its evaluation to rerun.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
from flax import serialization

from pipeline.artifacts import atomic_dir, read_json, write_json
from pipeline.errors import PipelineError

CONFIG = "config.json"
PARAMS = "params.msgpack"


class CheckpointError(PipelineError, RuntimeError):
    """A model directory that cannot be loaded; the message names it."""


def save_model(directory: str | Path, params: Any, config: dict[str, Any]) -> None:
    """Write ``params`` and ``config`` to ``directory``, replacing it atomically."""
    with atomic_dir(directory) as tmp:
        (tmp / PARAMS).write_bytes(serialization.msgpack_serialize(jax.device_get(params)))
        write_json(tmp / CONFIG, config)


def load_model(directory: str | Path) -> tuple[Any, dict[str, Any]]:
    """Return ``(params, config)`` from a directory written by :func:`save_model`."""
    directory = Path(directory)
    if not (directory / CONFIG).is_file() or not (directory / PARAMS).is_file():
        raise CheckpointError(f"{directory}: not a model directory (run the train stage first)")
    config = read_json(directory / CONFIG)
    try:
        params = serialization.msgpack_restore((directory / PARAMS).read_bytes())
    except Exception as err:  # msgpack raises several unrelated types on bad bytes
        raise CheckpointError(f"{directory / PARAMS}: unreadable parameters: {err}") from None
    return params, config
