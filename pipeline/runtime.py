"""The process environment rnnpipe runs its CPU work in, set by rnnpipe itself.

XLA:CPU gives every run of a compiled program one block of temporaries (73 MB for a
char-LM train step at size S), allocated with malloc when the step starts and freed
when it ends. glibc maps a block that large from the kernel and unmaps it again every
step, so every step first-touches fresh memory: the kernel zeroes it page by page
(17,000 minor faults per lstm-S step), and the kernels that write it first (broadcasts,
the first matmuls) run at page-fault speed. Four glibc malloc settings
(``GLIBC_TUNABLES``) stop that:

- ``glibc.malloc.hugetlb=1``: transparent huge pages for what malloc maps, 2 MB per
  fault instead of 4 kB (17,000 faults a step become about 500);
- ``glibc.malloc.arena_max=1``, ``glibc.malloc.mmap_max=0``: every block comes from the
  main heap, never from a mapping of its own (a thread's own arena maps any block over
  64 MB, whatever ``mmap_max`` says, so one arena is needed for the next setting to hold);
- ``glibc.malloc.trim_threshold=4294967296``: up to 4 GiB of freed heap stays with the
  process, so the next step reuses the same, already-touched block (0 faults a step).
  It was 1 GiB until LSTM layers ran on oneDNN, whose workspaces make an lstm-M step's
  temporaries 587 MB: three such blocks passed 1 GiB of free heap, glibc trimmed it and
  re-faulted them, and one step in five took over a second (30 single lstm-M steps:
  median 427 ms, 90th percentile 1,067 ms at 1 GiB; 402 and 473 ms at 4 GiB).

Measured on 2 cores (AMD EPYC family 26 model 2), one process per setting, two rounds
interleaved, median ms per char-LM train step (benchmarks/rnn_speed.py's models) and
minor page faults per step; an ad-hoc probe at 2158f2b (``python benchmarks/step_cost.py``
compares no settings against these, in its train-step columns):

    train step       hugetlb=1 only          all four
    JAX lstm-S       88 ms,  539 faults      86 ms,   0 faults
    JAX lstm-M       702 ms, 657 faults      599 ms, 70 faults
    JAX gru-S        78 ms,  206 faults      74 ms,   0 faults
    JAX gru-M        515 ms, 644 faults      485 ms, 12 faults
    PyTorch lstm-S   43 ms,  7 faults        53 ms,   0 faults   (min 37.7 / 35.8 ms)
    PyTorch lstm-M   505 ms, 1908 faults     378 ms,  9 faults

and before any of them (b2f4e0b): 17,000 faults and ~95 ms per JAX lstm-S step, 654 ms
at lstm-M. PyTorch gains too, so the benchmarks run every framework with them.

glibc reads the tunables once, when the process starts, so they cannot be set from Python
inside the process that needs them. Two places set them: ``./dev`` exports
:func:`environment`'s value for everything it runs (dvc repro and every stage under it,
the tests), and ``python -m pipeline`` re-executes itself once with them when started
without (:func:`ensure`). A user's own setting of any of these keys wins.
``RNNPIPE_RUNTIME_ENV=0`` turns them all off (to measure without them). On a system
without glibc they change nothing. They change no result: the same floats come out
(``benchmarks/determinism.py`` hashes the parameters).

XLA flags were measured too and none is set: see the closing note of issue 15 and
benchmarks/results/step-cost.md.
"""

from __future__ import annotations

import os
import sys

TUNABLES = (
    "glibc.malloc.hugetlb=1",
    "glibc.malloc.arena_max=1",
    "glibc.malloc.mmap_max=0",
    "glibc.malloc.trim_threshold=4294967296",
)
_MARK = "RNNPIPE_RUNTIME_ENV"


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with rnnpipe's runtime settings added; a user's
    own ``GLIBC_TUNABLES`` entries are kept, and one that sets any of :data:`TUNABLES`'
    keys wins over ours."""
    env = dict(os.environ if base is None else base)
    if env.get(_MARK) == "0":
        return env
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    users = {t.split("=", 1)[0] for t in tunables}
    tunables += [t for t in TUNABLES if t.split("=", 1)[0] not in users]
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


if __name__ == "__main__":  # ./dev: print the GLIBC_TUNABLES value to export (empty: none)
    print(environment().get("GLIBC_TUNABLES", ""))
