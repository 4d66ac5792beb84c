"""What produced a benchmark result: every results file records :func:`machine_facts`.

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


def cpu_model() -> str:
    """The CPU's model name with its family/model numbers and widest vector extension
    (``/proc/cpuinfo``; a VM may report only "AMD EPYC", and the numbers tell Zen 4 from
    Zen 5); ``platform.processor()`` elsewhere."""
    try:
        info: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
        flags = info.get("flags", "").split()
        isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
        return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}, {isa})"
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


def thp_mode() -> str:
    """The kernel's transparent huge page mode (the bracketed word), or ``unknown``."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        return text.split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        return "unknown"


def machine_facts() -> dict:
    """What produced a result: CPU model, cores, library versions, the XLA flags and malloc
    settings in force (torch's version where it is installed)."""
    import jax
    import jaxlib

    from pipeline import runtime

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
