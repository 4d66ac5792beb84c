"""The only module that reads or writes model directories.

A model directory is self-describing: ``config.json`` holds the constructor arguments
and everything else needed to run the model (vocabularies, feature names), and
``params/`` holds the Flax parameters as an orbax checkpoint. The directory is built
beside its target and swapped in whole, so a failed save never costs the old model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from pipeline.artifacts import atomic_dir, read_json, write_json

CONFIG = "config.json"
PARAMS = "params"


class CheckpointError(RuntimeError):
    """A model directory that cannot be loaded; the message names it."""


def save_model(directory: str | Path, params: Any, config: dict[str, Any]) -> None:
    """Write ``params`` and ``config`` to ``directory``, replacing it atomically."""
    with atomic_dir(directory) as tmp:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp.absolute() / PARAMS, jax.device_get(params))
        checkpointer.wait_until_finished()
        write_json(tmp / CONFIG, config)


def load_model(directory: str | Path) -> tuple[Any, dict[str, Any]]:
    """Return ``(params, config)`` from a directory written by :func:`save_model`."""
    directory = Path(directory).absolute()
    if not (directory / CONFIG).is_file() or not (directory / PARAMS).is_dir():
        raise CheckpointError(f"{directory}: not a model directory (run the train stage first)")
    config = read_json(directory / CONFIG)
    params = ocp.StandardCheckpointer().restore(directory / PARAMS)
    return params, config
