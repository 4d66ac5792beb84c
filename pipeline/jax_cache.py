"""JAX's persistent compilation cache, for every rnnpipe process.

Each stage is a new process, so without a cache every ``dvc repro``, ``dvc exp run`` and
scheduled refresh compiles the same programs again. :func:`enable` points JAX's
persistent cache (``jax_compilation_cache_dir``) at a per-user folder, and sets the
minimum compile time and entry size to 0: most of a stage's compilations are small
(model initialisation compiles about a hundred one-op programs), and JAX would
otherwise never write them.

Where: ``$RNNPIPE_JAX_CACHE`` when set (``0`` or ``off`` turns the cache off), else
``$XDG_CACHE_HOME/rnnpipe/jax`` (default ``~/.cache/rnnpipe/jax``). Inside it, one folder
per :func:`key_name`: the jax and jaxlib versions, the CPU (model and instruction-set
flags) and the oneDNN kernel's build. JAX's own key covers the program, the compile
options, the XLA flags and the jax/jaxlib versions, but not the CPU that compiled the
code (XLA:CPU compiles for the host's instruction set, and a home folder can be shared
between machines) nor the shared object behind the oneDNN custom call (its symbols are
found by name), so those two name the folder: a rebuilt kernel or another CPU kind
starts an empty folder, never a stale one. The kernel's build key does not depend on
where the clone lies, so two clones of one environment share a folder.

Concurrency: two processes compiling the same program both write the same bytes to the
same entry. One that reads an entry while another is still writing it fails to
decompress it, which JAX turns into a warning and a normal compilation: a run never
fails on the cache. No size limit is set: with one, JAX takes a file lock and lists the
whole folder on every write (142 ms a write with 2,300 entries, and the fast test tier
writes thousands), so the folder grows until you delete it (38 MB after a run of the fast
test tier; any of it can be removed at any time).

A cached program is the same executable, so it computes the same floats
(tests/test_jax_cache.py checks it).

What it saved: :func:`enable` also counts this process's compilations (JAX's monitoring
events), and :func:`summary` says in one line how many programs XLA compiled, in how many
seconds, and how many the cache served; every stage that computes prints it on stderr.
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path

from pipeline.evaluation import provenance

ENV = "RNNPIPE_JAX_CACHE"
CPU_FIELDS = ("vendor_id", "cpu family", "model", "model name", "flags")  # what names the CPU


def base_dir(env: dict[str, str] | None = None) -> Path | None:
    """The cache's root folder, or None when ``$RNNPIPE_JAX_CACHE`` turns it off."""
    env = os.environ if env is None else env
    chosen = env.get(ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("0", "off", "false", "no", "") else Path(chosen).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnpipe" / "jax"


def cpu_fingerprint() -> str:
    """The machine's architecture, CPU model and instruction-set flags, hashed."""
    info = provenance.cpu_info()
    facts = [platform.machine(), *(f"{field}={info[field]}" for field in CPU_FIELDS if field in info)]
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:12]


def kernel_build() -> str:
    """The oneDNN kernel's build key (its library's name), or ``none`` where it cannot be built."""
    from pipeline.kernels import onednn

    try:
        return onednn.library_path().stem.rsplit("-", 1)[-1]
    except onednn.Unavailable:
        return "none"


def key_name() -> str:
    """The folder name: what JAX's own cache key leaves out, and the versions."""
    versions = "-".join(f"{dist}{_version(dist)}" for dist in ("jax", "jaxlib"))
    return f"{versions}-cpu{cpu_fingerprint()}-onednn{kernel_build()}"


# JAX's events: the first times every program XLA is asked for, compiled or read from the
# cache; the other two come with each read that found its entry
_COMPILED = "/jax/core/compile/backend_compile_duration"
_READ = "/jax/compilation_cache/cache_retrieval_time_sec"
_SAVED = "/jax/compilation_cache/compile_time_saved_sec"
_totals = {_COMPILED: [0, 0.0], _READ: [0, 0.0], _SAVED: [0, 0.0]}
_counting = False


def _count(event: str, duration: float, **_) -> None:
    if event in _totals:
        _totals[event][0] += 1
        _totals[event][1] += max(duration, 0.0)


def count_compilations() -> None:
    """Start counting this process's XLA compilations and cache loads (once per process)."""
    global _counting
    if not _counting:
        from jax import monitoring

        monitoring.register_event_duration_secs_listener(_count)
        _counting = True


def counts() -> dict[str, float]:
    """Compilations so far: ``compiled`` programs in ``compile_seconds`` (XLA's backend
    compilation), and ``loaded`` from the cache, ``saved_seconds`` of compilation spared."""
    (asked, asked_s), (read, read_s), (_, saved_s) = (_totals[e] for e in (_COMPILED, _READ, _SAVED))
    return {"compiled": asked - read, "compile_seconds": round(max(asked_s - read_s, 0.0), 2), "loaded": read,
            "saved_seconds": round(saved_s, 2)}


def summary() -> str:
    """One line for a stage's log: what this process compiled, and what the cache served."""
    c = counts()
    return (f"compilation: {c['compiled']} program{'' if c['compiled'] == 1 else 's'} compiled in "
            f"{c['compile_seconds']:.1f} s, "
            f"{c['loaded']} loaded from the cache ({c['saved_seconds']:.1f} s saved)")


def enable(env: dict[str, str] | None = None) -> Path | None:
    """Turn the persistent cache on for this process (before its first compilation);
    returns the folder, or None when turned off."""
    count_compilations()
    root = base_dir(env)
    if root is None:
        return None
    import jax

    folder = root / key_name()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"
