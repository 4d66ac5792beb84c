"""Which device rnnpipe trains on: the machine's accelerator when it has one, else the CPU.

``./dev`` asks this module before it installs or runs anything, so that ``./dev repro``
on a GPU machine installs JAX's CUDA plugin and trains on the GPU, with no step of the
user's own. The rule, :func:`choose`:

- ``RNNPIPE_DEVICE`` (``auto``, the default, or ``cpu``, ``gpu``, ``tpu``) forces a choice;
  ``./dev test`` and CI use ``cpu`` unless it is set, so the tests and the committed
  results stay on the CPU.
- ``auto`` picks an NVIDIA GPU when ``nvidia-smi`` answers with a driver version, a TPU
  when the machine has TPU device files (``/dev/accel*``, Cloud TPU VMs), and the CPU
  otherwise.
- A GPU's extra follows its driver: ``cuda13`` from driver 580 on, ``cuda12`` from 525
  (JAX's wheels bundle CUDA and cuDNN; the driver is the one thing they need from the
  machine).
- A machine that looks like a GPU machine (``/dev/nvidia0``) but whose driver does not
  answer, a driver too old for JAX's CUDA wheels, or ``RNNPIPE_DEVICE=gpu`` on a machine
  without one is an error with what to do, never a silent run on the CPU.

After the install, :func:`verify` (``python -m pipeline.device --verify PLATFORM``) checks
that JAX really sees the chosen device, and says why when it does not.

Only the standard library at import time: the system Python runs it before ``.venv``
exists (``python3 pipeline/device.py`` prints ``PLATFORM EXTRA``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

CHOICES = ("auto", "cpu", "gpu", "tpu")
ENV = "RNNPIPE_DEVICE"
CUDA13_DRIVER = 580  # JAX's cuda13 wheels need an R580 driver or newer
CUDA12_DRIVER = 525  # ... and its cuda12 wheels R525


class DeviceError(RuntimeError):
    """The requested or detected device cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Facts:
    """What the machine shows of its accelerators (:func:`probe`)."""

    nvidia_driver: str | None  # nvidia-smi's driver version, None when it did not answer
    nvidia_error: str | None  # why nvidia-smi did not answer, when it exists but failed
    nvidia_nodes: bool  # /dev/nvidia0 exists
    tpu_nodes: bool  # /dev/accel* exists


@dataclass(frozen=True)
class Choice:
    platform: str  # JAX_PLATFORMS: cpu, cuda or tpu
    extra: str  # the pyproject extra to install: "", cuda12, cuda13 or tpu
    why: str  # one line for the log


def probe(run: Callable[[list[str]], str] | None = None) -> Facts:
    """Look at the machine. ``run`` (for tests) runs a command and returns its stdout,
    raising ``OSError``/``subprocess.SubprocessError`` when it fails."""

    def default_run(cmd: list[str]) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout

    run = run or default_run
    driver = error = None
    if run is not default_run or shutil.which("nvidia-smi"):
        try:
            out = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]).split()
            driver = out[0] if out else None
            error = None if driver else "nvidia-smi listed no GPU"
        except FileNotFoundError:
            pass
        except (OSError, subprocess.SubprocessError) as err:
            stderr = getattr(err, "stderr", "") or ""
            error = (stderr.strip().splitlines() or [str(err)])[-1]
    return Facts(driver, error, os.path.exists("/dev/nvidia0"), bool(glob.glob("/dev/accel*")))


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise DeviceError(f"nvidia-smi reported a driver version rnnpipe cannot read: {version!r}") from None


def _gpu(facts: Facts, forced: bool) -> Choice:
    if facts.nvidia_driver is None:
        if facts.nvidia_error:
            raise DeviceError(f"this machine has an NVIDIA GPU, but its driver does not answer "
                              f"(nvidia-smi: {facts.nvidia_error}). Fix the driver, or set {ENV}=cpu to "
                              f"train on the CPU.")
        if facts.nvidia_nodes:
            raise DeviceError(f"this machine has an NVIDIA device (/dev/nvidia0) but no nvidia-smi: the driver "
                              f"is missing or incomplete. Install it, or set {ENV}=cpu to train on the CPU.")
        raise DeviceError(f"{ENV}=gpu, but this machine shows no NVIDIA GPU (no nvidia-smi, no /dev/nvidia0). "
                          f"Unset it to use what the machine has.")
    major = _major(facts.nvidia_driver)
    if major >= CUDA13_DRIVER:
        extra = "cuda13"
    elif major >= CUDA12_DRIVER:
        extra = "cuda12"
    else:
        raise DeviceError(f"the NVIDIA driver {facts.nvidia_driver} is too old for JAX's CUDA wheels "
                          f"(CUDA 12 needs {CUDA12_DRIVER} or newer, CUDA 13 needs {CUDA13_DRIVER}). Update the "
                          f"driver, or set {ENV}=cpu to train on the CPU.")
    how = f"{ENV}=gpu" if forced else "detected"
    return Choice("cuda", extra, f"NVIDIA GPU, driver {facts.nvidia_driver} ({how}): jax[{extra}]")


def choose(requested: str | None, facts: Facts) -> Choice:
    """The device for ``requested`` (``RNNPIPE_DEVICE``'s value; ``None`` or empty:
    ``auto``) on a machine with ``facts``. Raises :class:`DeviceError`."""
    requested = (requested or "auto").strip().lower()
    if requested not in CHOICES:
        raise DeviceError(f"{ENV} must be one of {', '.join(CHOICES)}, not {requested!r}")
    if requested == "cpu":
        return Choice("cpu", "", f"CPU ({ENV}=cpu)")
    if requested == "gpu":
        return _gpu(facts, forced=True)
    if requested == "tpu":
        if not facts.tpu_nodes:
            raise DeviceError(f"{ENV}=tpu, but this machine has no TPU device files (/dev/accel*). "
                              f"Unset it to use what the machine has.")
        return Choice("tpu", "tpu", f"TPU ({ENV}=tpu): jax[tpu]")
    if facts.nvidia_driver or facts.nvidia_error or facts.nvidia_nodes:
        return _gpu(facts, forced=False)
    if facts.tpu_nodes:
        return Choice("tpu", "tpu", "TPU (detected: /dev/accel*): jax[tpu]")
    return Choice("cpu", "", "CPU (no GPU or TPU found)")


def verify(platform: str) -> str:
    """Check, inside the installed environment, that JAX uses ``platform``; return a
    one-line description of the devices, or raise :class:`DeviceError` saying why not."""
    if platform == "cpu":
        import jax

        return describe(jax.devices())
    try:
        import jax

        devices = jax.devices(platform)
    except Exception as err:  # any backend failure becomes one clear message
        raise DeviceError(f"JAX cannot use the {platform} device that was chosen ({err}). Check the driver, or "
                          f"set {ENV}=cpu to train on the CPU.") from None
    return describe(devices)


def describe(devices) -> str:
    """``cuda: 1 x NVIDIA H200`` / ``cpu: 1 x cpu``: the platform, count and kind."""
    devices = list(devices)
    kinds = sorted({d.device_kind for d in devices})
    return f"{devices[0].platform}: {len(devices)} x {', '.join(kinds)}"


PREALLOCATE = "XLA_PYTHON_CLIENT_PREALLOCATE"
MEM_FRACTION = "XLA_PYTHON_CLIENT_MEM_FRACTION"


def shared_memory(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a JAX process that may share its accelerator with others: JAX
    preallocates 75 % of a GPU's memory per process by default, so a second concurrent
    run would fail to allocate. Here each process allocates what it uses as it goes
    (``XLA_PYTHON_CLIENT_PREALLOCATE=false``), unless the user set either that or a
    fixed share per process (``XLA_PYTHON_CLIENT_MEM_FRACTION``, e.g. ``0.3`` for three
    runs); their setting wins. On the CPU neither has any effect."""
    env = dict(env)
    if PREALLOCATE not in env and MEM_FRACTION not in env:
        env[PREALLOCATE] = "false"
    return env


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["--verify"]:
            print(verify(argv[1]))
            return 0
        choice = choose(os.environ.get(ENV), probe())
    except DeviceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(choice.platform, choice.extra or "-")
    print(f"rnnpipe: device {choice.why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
