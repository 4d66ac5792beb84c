"""Training curves through dvclive.

Each history row of :func:`pipeline.training.loop.fit` becomes one dvclive step, numbered by the
training step, with one TSV per quantity under ``<dir>/plots/metrics/``::

    train/loss.tsv  train/grad_norm.tsv  train/lr.tsv  train/tokens_per_s.tsv
    valid/loss.tsv  valid/bleu.tsv  ...

``dvc.yaml`` declares each run's folder as plots (x: step), so ``dvc plots show`` and
``dvc plots diff`` draw them, and ``rnnpipe report`` overlays two revisions of them.

``Live(dvcyaml=False, save_dvc_exp=False)``: the stage runs inside ``dvc repro`` or
``dvc exp run``, which own ``dvc.yaml`` and the experiment. No summary is written (no
``next_step``): the curves are the record, and the evaluate stages own the metrics.

A run that resumes from a checkpoint starts the folder afresh and logs the checkpoint's
rows again before it goes on, so a killed and resumed run leaves exactly the rows of an
uninterrupted one: no gap, no row twice. Every file but ``train/tokens_per_s.tsv`` (wall
clock) is then byte-identical to an uninterrupted run's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pipeline.training.loop import Hook, Run


def metric_name(key: str) -> str:
    """A history key as a dvclive metric: ``valid_bleu`` -> ``valid/bleu``, ``loss`` -> ``train/loss``."""
    if key.startswith("valid_"):
        return "valid/" + key.removeprefix("valid_")
    return "train/" + key


class Curves(Hook):
    """dvclive logging for one training run into ``directory``; a
    :class:`pipeline.training.loop.Hook` (after the checkpoints, so a resumed run's
    curves start from its restored history)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._live = None

    def start(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        """Start the folder afresh (dvclive clears its plots), then log ``rows`` again."""
        from dvclive import Live  # imports DVC: only when a run really logs

        self._live = Live(str(self.directory), resume=False, report=None, dvcyaml=False, save_dvc_exp=False)
        for row in rows:
            self.log(row)

    def begin(self, run: Run, desc: str) -> None:  # type: ignore[override]
        self.start(run.history)
        tqdm.write(f"{desc}: training curves in {self.directory}")

    def after_row(self, row: dict[str, float]) -> None:
        self.log(row)

    def log(self, row: Mapping[str, Any]) -> None:
        """One history row: ``step`` and the values logged at it."""
        if self._live is None:
            raise RuntimeError("Curves.log before Curves.start")
        self._live.step = int(row["step"])
        for key, value in row.items():
            if key != "step":
                self._live.log_metric(metric_name(key), float(value))
