"""What produced a benchmark result: every results file records :func:`machine_facts`
(the CPU facts come from :mod:`pipeline.evaluation.provenance`, which every metrics file records too).

The CI machine's kind has changed between sessions (AMD Zen 4, Zen 5; the brief expects an
Intel Xeon), and its speed and even its float results change with it, so a figure without
the CPU it came from cannot be compared with anything.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def thp_mode() -> str:
    """The kernel's transparent huge page mode (the bracketed word), or ``unknown``."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        return text.split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        return "unknown"


def machine_facts() -> dict:
    """What produced a result: what every metrics file records (:func:`pipeline.evaluation.provenance.facts`:
    CPU, cores, devices, jax/jaxlib, XLA flags), plus the platform, Python, the malloc
    settings in force and torch's version where it is installed."""
    from pipeline import runtime
    from pipeline.evaluation import provenance

    facts = {**provenance.facts(), "platform": platform.platform(), "python": platform.python_version(),
             "glibc_tunables": runtime.environment().get("GLIBC_TUNABLES", ""), "transparent_hugepage": thp_mode()}
    try:
        import torch

        facts.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        facts["torch"] = None
    return facts
