"""What produced a result: the machine and the numerical stack, recorded in every metrics
file (``provenance``) and, with a few more fields, every benchmark result
(benchmarks/machine.py).

The same code, seeds and data give different floats on different CPUs (XLA picks its
kernels for the instruction set it finds), so a metric is comparable only with the
machine it came from. ``rnnpipe report`` compares these fields between two revisions and
warns when they differ.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_info() -> dict[str, str]:
    """The first CPU's fields in ``/proc/cpuinfo`` (``model name``, ``flags``, ...); empty
    where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def cpu_model() -> str:
    """The CPU's model name with its family/model numbers and widest vector extension
    (``/proc/cpuinfo``; a VM may report only "AMD EPYC", and the numbers tell Zen 4 from
    Zen 5); ``platform.processor()`` elsewhere."""
    try:
        info = cpu_info()
        flags = info.get("flags", "").split()
        isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
        return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')}, {isa})"
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


def facts() -> dict[str, str]:
    """The fields a metrics file records: CPU, cores, the JAX device kind and count, the
    jax/jaxlib versions and the XLA flags in force. All strings, so that ``dvc metrics
    diff`` shows a change of machine as a changed label, never as a number."""
    import jax
    import jaxlib

    devices = jax.devices()
    return {"cpu": cpu_model(), "cores": str(os.cpu_count()), "device": f"{len(devices)} x {devices[0].device_kind}",
            "jax": jax.__version__, "jaxlib": jaxlib.__version__, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def differences(old: dict[str, str], new: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """The provenance fields whose values differ, ``{field: (old, new)}``."""
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def stamped(scores: dict, kernel: str | None = None) -> dict:
    """``scores`` with a ``provenance`` entry: what every metrics file is written as. With
    ``kernel``, the recurrent kernel the model trained on (``onednn``, ``scan``, ``cudnn``,
    joined by ``+``; :func:`pipeline.training.steps.recurrent_kernel`), which changes the
    floats as much as the CPU does."""
    return {**scores, "provenance": {**facts(), **({"kernel": kernel} if kernel else {})}}
