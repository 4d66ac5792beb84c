"""The process environment rnnpipe runs its CPU work in, set by rnnpipe itself.

One setting pays on the CPU machines we measured: **transparent huge pages for glibc's
malloc** (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``). XLA:CPU allocates each training
step's temporaries afresh, tens of megabytes that glibc maps from the kernel and hands
back every step, so every step first-touches them again: 17,000 minor page faults per
char-LM step at size S (67 MB), 30,000 to 100,000 at size M (two probes that
count differently). With huge pages the same step takes about 250 to 750. Medians of
20 steps from an ad-hoc probe, one process per setting, on 2 cores (AMD EPYC family 26
model 2), at b2f4e0b; ``python benchmarks/step_cost.py`` (configurations ``default``
and ``rnnpipe``, train-step columns) measures the same thing:

    char-LM train step   glibc default   hugetlb=1      PyTorch: default   hugetlb=1
    lstm-S               ~95 ms          ~69 ms                  ~42 ms     ~41 ms
    lstm-M               ~654 ms         ~508 ms                 ~587 ms    ~376 ms
    gru-M                ~463 ms         ~431 ms                 ~809 ms    ~739 ms

PyTorch gains too, so the benchmarks run every framework with it (benchmarks/rnn_speed.py).

glibc reads the tunable once, when the process starts, so it cannot be set from Python
inside the process that needs it. Two places set it: ``./dev`` exports it for everything
it runs (dvc repro and every stage under it, the tests), and ``python -m pipeline``
re-executes itself once with it when started without (:func:`ensure`). It only asks the
kernel for huge pages where ``/sys/kernel/mm/transparent_hugepage/enabled`` allows them
(``always`` or ``madvise``); elsewhere, and on non-glibc systems, it changes nothing.
``RNNPIPE_RUNTIME_ENV=0`` turns it off (to measure without it).

XLA flags were measured too and none is set: see the closing note of issue 15 and
benchmarks/results/step-cost.md.
"""

from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
_MARK = "RNNPIPE_RUNTIME_ENV"


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with rnnpipe's runtime settings added; a user's
    own ``GLIBC_TUNABLES`` entries are kept, and one that sets ``glibc.malloc.hugetlb``
    wins over ours."""
    env = dict(os.environ if base is None else base)
    if env.get(_MARK) == "0":
        return env
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    if not any(t.split("=", 1)[0] == TUNABLE.split("=", 1)[0] for t in tunables):
        tunables.append(TUNABLE)
    env["GLIBC_TUNABLES"] = ":".join(tunables)
    return env


def applied(env: dict[str, str] | None = None) -> bool:
    """Whether ``env`` (default: this process's) already carries the settings."""
    env = dict(os.environ if env is None else env)
    return env.get(_MARK) == "0" or environment(env) == env


def ensure(argv: list[str]) -> None:
    """Re-execute this Python process with rnnpipe's runtime settings, once, unless it
    already has them. Call it first thing in an entry point, before anything heavy is
    imported; ``argv`` is the command line to run again (e.g. ``["-m", "pipeline", ...]``)."""
    if applied() or not sys.platform.startswith("linux") or os.environ.get(f"{_MARK}_EXECED"):
        return
    env = environment()
    env[f"{_MARK}_EXECED"] = "1"  # never loop, whatever the environment does with the tunable
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], env)
