"""The hooks every train stage runs: checkpoints (resume) first, then the curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.training import checkpoints
from pipeline.training.curves import Curves
from pipeline.training.loop import Hook


def for_stage(workload: str, section: Any, cell: str, desc: str, config: dict[str, Any],
              curves: bool = True) -> list[Hook]:
    """Checkpoints under ``<paths.checkpoints>/<desc>/<fingerprint>`` (of the cell, the
    ``workload`` params section and the prepared data), holding the model ``config``; and
    with ``curves`` the dvclive curves in ``<paths.live>/<workload>-<cell>``. In this
    order, so the curves start from a restored history."""
    p = section.paths
    saves = checkpoints.for_run(p.checkpoints, desc, {"cell": cell, workload: section}, p.prepared,
                                section.train.checkpoint_every, config, keep=section.train.keep_checkpoints)
    return [saves, Curves(Path(p.live) / f"{workload}-{cell}")] if curves else [saves]
