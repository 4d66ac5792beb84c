"""Text samples drawn during training, as files a reviewer can read across steps.

The TFLearn Shakespeare generator and char-rnn print samples while they train, which is
how one watches a language model learn to spell. :class:`TextSamples` is a
:class:`pipeline.training.loop.Hook` that, every ``every`` steps, calls ``draw(params,
step)`` for ``{label: text}`` and writes each as ``<directory>/step-<step>-<label>.txt``.

The texts are also kept in the run's checkpoint (``run.extras``), so a resumed run
writes them all again: under ``dvc repro`` the folder is an output, which DVC deletes
before the stage runs. ``draw`` must be a pure function of the parameters and the step
(its key folded from the step), so a killed and resumed run writes the same files as an
uninterrupted one; files from steps after the restored one are removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pipeline import artifacts
from pipeline.training.loop import Hook, Run

_NAME = re.compile(r"step-(\d+)-.+\.txt")


def file_name(step: int, label: str) -> str:
    return f"step-{step:06d}-{label}.txt"


class TextSamples(Hook):
    def __init__(self, directory: str | Path, every: int, draw: Callable[[Any, int], dict[str, str]]):
        self.directory, self.every, self.draw = Path(directory), every, draw
        self.key = f"samples:{self.directory.name}"  # this hook's entry in run.extras

    def begin(self, run: Run, desc: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in self.directory.iterdir():
            if (m := _NAME.fullmatch(path.name)) and int(m.group(1)) > run.step:
                path.unlink()  # from a later step than the run restarts at
        kept = run.extras.setdefault(self.key, {})
        for name, text in kept.items():
            artifacts.write_text(self.directory / name, text)
        tqdm.write(f"{desc}: samples every {self.every} steps in {self.directory}"
                   + (f" ({len(kept)} restored from the checkpoint)" if kept else ""))

    def record(self, run: Run) -> None:
        if run.step % self.every == 0:
            kept = run.extras.setdefault(self.key, {})
            for label, text in self.draw(run.state.weights, run.step).items():
                name = file_name(run.step, label)
                kept[name] = text + "\n"
                artifacts.write_text(self.directory / name, kept[name])
