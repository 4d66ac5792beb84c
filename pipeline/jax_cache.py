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
starts an empty folder, never a stale one.

Concurrency: two processes compiling the same program both write the same bytes to the
same entry. One that reads an entry while another is still writing it fails to
decompress it, which JAX turns into a warning and a normal compilation: a run never
fails on the cache. No size limit is set: with one, JAX takes a file lock and lists the
whole folder on every write (142 ms a write with 2,300 entries, and the fast test tier
writes thousands), so the folder grows until you delete it (38 MB after a run of the fast
test tier; any of it can be removed at any time).

A cached program is the same executable, so it computes the same floats
(tests/test_jax_cache.py checks it).
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


def enable(env: dict[str, str] | None = None) -> Path | None:
    """Turn the persistent cache on for this process (before its first compilation);
    returns the folder, or None when turned off."""
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
