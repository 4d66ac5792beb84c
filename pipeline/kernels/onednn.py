"""oneDNN's fused LSTM layer on the CPU, as a JAX custom call with a custom VJP.

Why: on a 2-core AVX-512 CPU, XLA's scanned LSTM (:mod:`pipeline.models.rnn`) trained at
0.54-0.69x PyTorch, whose ``nn.LSTM`` runs oneDNN's fused LSTM. No XLA flag closed the
gap (benchmarks/results/step-cost.md lists what was tried). This module calls the same
oneDNN primitives PyTorch does, through XLA's FFI (``lstm_onednn.cc``):
``benchmarks/rnn_speed.py`` measures the effect.

- The layout is rnnpipe's (``wi`` [in, 4H], ``wh`` [H, 4H], gates i f g o, one bias):
  the same parameters train and serve on either path, and a test checks that outputs and
  gradients match the scan to float32 rounding.
- The shared library is compiled from ``lstm_onednn.cc`` on first use (about 5 s with
  g++; ``./dev`` does it during set-up) against the ``onednn-cpu-gomp`` wheel, and cached
  under ``$RNNPIPE_KERNEL_CACHE`` (default ``~/.cache/rnnpipe/kernels``), keyed by the
  source, the compiler flags and the jaxlib and oneDNN versions.
- Use :func:`unavailable` to ask whether it can run here (it says why not), and
  :func:`lstm` to run a layer. ``python -m pipeline.kernels.onednn`` builds it and
  prints where it is.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import warnings
from functools import partial
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp

SOURCE = Path(__file__).with_name("lstm_onednn.cc")
FLAGS = ["-O2", "-std=c++17", "-shared", "-fPIC", "-Wall", "-Wextra"]
PACKAGES = "onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0"
_FWD, _BWD = "rnnpipe_lstm_onednn_fwd", "rnnpipe_lstm_onednn_bwd"


class Unavailable(RuntimeError):
    """The oneDNN kernel cannot run in this environment; the message says why and what to do."""


def _prefix() -> Path:
    """Where pip put the oneDNN wheels' files: the environment's lib/ and include/."""
    return Path(sys.prefix)


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnpipe" / "kernels"
    return Path(os.environ.get("RNNPIPE_KERNEL_CACHE") or default)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _command(out: Path) -> list[str]:
    """The compiler command line, or :class:`Unavailable` naming what is missing."""
    prefix = _prefix()
    lib, include = prefix / "lib", prefix / "include"
    if not (lib / "libdnnl.so.3").exists():
        raise Unavailable(f"oneDNN's library is not installed ({lib / 'libdnnl.so.3'} is missing): "
                          f"pip install {PACKAGES}")
    if not (include / "oneapi" / "dnnl" / "dnnl.hpp").exists():
        raise Unavailable(f"oneDNN's headers are not installed ({include / 'oneapi/dnnl/dnnl.hpp'} is missing): "
                          f"pip install {PACKAGES}")
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise Unavailable("no C++ compiler: install g++ (or set CXX) to build the oneDNN LSTM kernel")
    # oneDNN's and XLA's headers are system headers: the warnings (-Wall -Wextra) are ours alone
    return [cxx, *FLAGS, "-isystem", str(include), "-isystem", jax.ffi.include_dir(), str(SOURCE), f"-L{lib}",
            "-l:libdnnl.so.3", f"-Wl,-rpath,{lib}", "-lpthread", "-o", str(out)]


def library_path() -> Path:
    """The cached shared library for this source, toolchain and environment (may not exist yet)."""
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    # the command, but not where the source lies: two clones share one build (and so one
    # compilation-cache folder, pipeline/jax_cache.py); the rpath keeps the environment in
    key.update(" ".join(_command(Path("out"))).replace(str(SOURCE), SOURCE.name).encode())
    key.update(f"jaxlib {_version('jaxlib')} onednn {_version('onednn-cpu-gomp')}".encode())
    return cache_dir() / f"lstm_onednn-{key.hexdigest()[:16]}.so"


def build() -> Path:
    """Compile the kernel unless the cache has it; returns the library's path."""
    out = library_path()
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    done = subprocess.run(_command(tmp), capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise Unavailable(f"compiling {SOURCE} failed:\n{done.stderr[-2000:]}")
    os.replace(tmp, out)  # atomic: concurrent builders each write their own file
    if done.stderr.strip():  # it builds without warnings (-Wall -Wextra); a new compiler's are shown once
        warnings.warn(f"compiling {SOURCE}:\n{done.stderr[-2000:]}", stacklevel=2)
    return out


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_why_not: str | None = None


def _load() -> ctypes.CDLL:
    global _lib, _why_not
    with _lock:
        if _lib is not None:
            return _lib
        if _why_not is not None:
            raise Unavailable(_why_not)
        try:
            lib = ctypes.cdll.LoadLibrary(str(build()))
        except (Unavailable, OSError) as e:
            _why_not = str(e)
            raise Unavailable(_why_not) from e
        lib.rnnpipe_lstm_workspace_bytes.restype = ctypes.c_int64
        lib.rnnpipe_lstm_workspace_bytes.argtypes = [ctypes.c_int64] * 4 + [ctypes.c_int]
        jax.ffi.register_ffi_target(_FWD, jax.ffi.pycapsule(lib.RnnpipeLstmFwd), platform="cpu")
        jax.ffi.register_ffi_target(_BWD, jax.ffi.pycapsule(lib.RnnpipeLstmBwd), platform="cpu")
        _lib = lib
        return lib


def unavailable() -> str | None:
    """None if the kernel can run in this process, else the reason it cannot."""
    if jax.default_backend() != "cpu":
        return f"the oneDNN kernel runs on the CPU; JAX's backend is {jax.default_backend()!r}"
    try:
        _load()
    except Unavailable as e:
        return str(e)
    return None


def _forward(x, h0, c0, wi, wh, b, reverse: bool):
    t, batch, features = x.shape
    hidden = h0.shape[-1]
    nbytes = _load().rnnpipe_lstm_workspace_bytes(t, batch, features, hidden, int(reverse))
    if nbytes < 0:
        raise Unavailable(f"oneDNN cannot build an LSTM for T={t} B={batch} I={features} H={hidden}")
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    call = jax.ffi.ffi_call(_FWD, (f32(t, batch, hidden), f32(batch, hidden), f32(batch, hidden),
                                   jax.ShapeDtypeStruct((nbytes,), jnp.uint8)), vmap_method="sequential")
    return call(x, h0, c0, wi, wh, b, reverse=reverse)


@partial(jax.custom_vjp, nondiff_argnums=(6,))
def _layer(x, h0, c0, wi, wh, b, reverse):
    ys, h, c, _ = _forward(x, h0, c0, wi, wh, b, reverse)
    return ys, h, c


def _layer_fwd(x, h0, c0, wi, wh, b, reverse):
    ys, h, c, workspace = _forward(x, h0, c0, wi, wh, b, reverse)
    return (ys, h, c), (x, h0, c0, wi, wh, b, ys, h, c, workspace)


def _layer_bwd(reverse, saved, cotangents):
    like = lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32)
    x, h0, c0, wi, wh, b = saved[:6]
    call = jax.ffi.ffi_call(_BWD, tuple(like(a) for a in (x, h0, c0, wi, wh, b)), vmap_method="sequential")
    return tuple(call(*saved, *cotangents, reverse=reverse))


_layer.defvjp(_layer_fwd, _layer_bwd)


def lstm(x: jax.Array, carry, wi: jax.Array, wh: jax.Array, bias: jax.Array, reverse: bool = False):
    """One LSTM layer over a whole unpadded sequence, by oneDNN.

    Args:
        x: <f32>[time, batch, features], time-major; carry: ``(c, h)``, each <f32>[batch, hidden].
        wi: <f32>[features, 4*hidden]; wh: <f32>[hidden, 4*hidden]; bias: <f32>[4*hidden]
            (gate blocks i, f, g, o, as :mod:`pipeline.models.rnn`).
        reverse: run from the last step to the first.

    Returns:
        ``((c, h), ys)`` with ``ys`` <f32>[time, batch, hidden], as
        :func:`pipeline.models.rnn.recurrence` returns them.
    """
    c0, h0 = carry
    ys, h, c = _layer(x, h0, c0, wi, wh, bias, reverse)
    return (c, h), ys


def one_line(reason: str, limit: int = 300) -> str:
    """A reason on one line: its first line, and for a failed compilation the compiler's
    first error line."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    if not lines:
        return "unknown reason"
    head, rest = lines[0].rstrip(":"), lines[1:]
    detail = next((line for line in rest if "error" in line.lower()), rest[0] if rest else "")
    text = f"{head}: {detail}" if detail else head
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Build (or find) the oneDNN LSTM kernel and print its path.")
    ap.add_argument("--check", action="store_true",
                    help="print nothing if the kernel loads, else one line saying why not (exit status 0 either way)")
    args = ap.parse_args()
    if args.check:
        why = unavailable()
        if why:
            print(f"rnnpipe: the oneDNN LSTM kernel is unavailable ({one_line(why)}); LSTM layers run on the "
                  "scan instead: slower, and with other floats than a machine that has it", file=sys.stderr)
        return
    try:
        print(build())
    except Unavailable as e:
        raise SystemExit(f"oneDNN LSTM kernel unavailable: {e}") from None


if __name__ == "__main__":
    main()
