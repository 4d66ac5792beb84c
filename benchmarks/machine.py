"""What produced a benchmark result: every results file records :func:`machine_facts`
(the CPU facts come from :mod:`pipeline.provenance`, which every metrics file records too).

The CI machine's kind has changed between sessions (AMD Zen 4, Zen 5; the brief expects an
Intel Xeon), and its speed and even its float results change with it, so a figure without
the CPU it came from cannot be compared with anything.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine_facts() -> dict:
    """What produced a result: CPU model, cores, library versions, the XLA flags and malloc
    settings in force (torch's version where it is installed)."""
    import jax
    import jaxlib

    from pipeline import runtime
    from pipeline.provenance import cpu_model, thp_mode

    facts = {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
             "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
             "jax_devices": str(jax.devices()), "xla_flags": os.environ.get("XLA_FLAGS", ""),
             "glibc_tunables": runtime.environment().get("GLIBC_TUNABLES", ""), "transparent_hugepage": thp_mode()}
    try:
        import torch

        facts.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        facts["torch"] = None
    return facts
