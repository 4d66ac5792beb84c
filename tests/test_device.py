"""Device selection (pipeline/device.py): what ./dev installs and trains on, per machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import device
from pipeline.device import DeviceError, Facts

ROOT = Path(__file__).resolve().parents[1]
NONE = Facts(nvidia_driver=None, nvidia_error=None, nvidia_nodes=False, tpu_nodes=False)


def facts(**kw) -> Facts:
    return Facts(**{**NONE.__dict__, **kw})


@pytest.mark.parametrize("requested, machine, platform, extra", [
    (None, NONE, "cpu", ""),
    ("auto", facts(nvidia_driver="580.65.06", nvidia_nodes=True), "cuda", "cuda13"),
    ("", facts(nvidia_driver="550.54.15"), "cuda", "cuda12"),
    ("AUTO", facts(tpu_nodes=True), "tpu", "tpu"),
    ("cpu", facts(nvidia_driver="580.65.06", nvidia_nodes=True), "cpu", ""),  # forced: the GPU is ignored
    ("gpu", facts(nvidia_driver="525.60.13"), "cuda", "cuda12"),
    ("tpu", facts(tpu_nodes=True), "tpu", "tpu"),
])
def test_choice_follows_the_machine_and_the_override(requested, machine, platform, extra):
    choice = device.choose(requested, machine)
    assert (choice.platform, choice.extra) == (platform, extra)
    assert choice.why


@pytest.mark.parametrize("requested, machine, says", [
    ("gpu", NONE, "shows no NVIDIA GPU"),
    ("tpu", NONE, "no TPU device files"),
    ("auto", facts(nvidia_error="NVIDIA-SMI has failed: driver/library version mismatch", nvidia_nodes=True),
     "driver/library version mismatch"),
    ("auto", facts(nvidia_nodes=True), "no nvidia-smi"),
    ("auto", facts(nvidia_driver="470.82.01"), "too old"),
    ("cuda", NONE, "must be one of auto, cpu, gpu, tpu"),
])
def test_a_broken_or_missing_device_is_an_error_not_the_cpu(requested, machine, says):
    with pytest.raises(DeviceError, match=says) as err:
        device.choose(requested, machine)
    if requested in ("auto", "gpu", "tpu"):
        assert "RNNPIPE_DEVICE" in str(err.value)  # and what to set instead


def test_probe_reads_the_driver_version_and_the_failure():
    assert device.probe(lambda cmd: "580.65.06\n").nvidia_driver == "580.65.06"

    def failing(cmd):
        raise subprocess.CalledProcessError(9, cmd, "", "NVIDIA-SMI has failed because it couldn't communicate\n")

    got = device.probe(failing)
    assert got.nvidia_driver is None and "couldn't communicate" in got.nvidia_error

    def missing(cmd):
        raise FileNotFoundError(cmd[0])

    assert device.probe(missing).nvidia_error is None


def fake_smi(tmp_path: Path, script: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n{script}\n")
    smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != device.ENV}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}


def run_dev_probe(env):  # what ./dev runs, with the system Python, before any install
    return subprocess.run([sys.executable, str(ROOT / "pipeline/device.py")], env=env, capture_output=True,
                          text=True)


def test_the_command_dev_runs_on_a_gpu_machine(tmp_path):
    out = run_dev_probe(fake_smi(tmp_path, "echo 580.65.06"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cuda", "cuda13"]
    assert "driver 580.65.06" in out.stderr
    forced = run_dev_probe({**fake_smi(tmp_path / "x", "echo 580.65.06"), device.ENV: "cpu"})
    assert forced.stdout.split() == ["cpu", "-"]


def test_the_command_dev_runs_with_a_broken_driver(tmp_path):
    out = run_dev_probe(fake_smi(tmp_path, "echo 'Failed to initialize NVML: Driver/library version mismatch' >&2; "
                                           "exit 9"))
    assert out.returncode == 1 and out.stdout == ""
    assert "Driver/library version mismatch" in out.stderr and "RNNPIPE_DEVICE=cpu" in out.stderr


def test_verify_names_the_device_or_says_why_not():
    assert device.verify("cpu").startswith("cpu: ")
    with pytest.raises(DeviceError, match="JAX cannot use the cuda device"):
        device.verify("cuda")  # the tests run with JAX_PLATFORMS=cpu: JAX has no CUDA backend here


def test_concurrent_runs_share_the_accelerator_memory():
    assert device.shared_memory({})[device.PREALLOCATE] == "false"
    mine = {device.MEM_FRACTION: "0.3"}
    assert device.shared_memory(mine) == mine  # a per-process share of the user's own wins
    assert device.shared_memory({device.PREALLOCATE: "true"})[device.PREALLOCATE] == "true"


def test_every_dvc_run_of_the_flows_gets_the_shared_memory_setting(tmp_path, monkeypatch):
    from pipeline.commands import dvc_cli

    monkeypatch.delenv(device.PREALLOCATE, raising=False)
    monkeypatch.delenv(device.MEM_FRACTION, raising=False)
    # a real dvc run whose stage command prints the variable it was given
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc_cli.dvc("init", "-q", cwd=tmp_path)
    dvc_cli.dvc("stage", "add", "-n", "show", "-o", "env.txt",
                f"{sys.executable} -c \"import os; open('env.txt', 'w').write(os.environ['{device.PREALLOCATE}'])\"",
                cwd=tmp_path)
    dvc_cli.dvc("repro", cwd=tmp_path)
    assert (tmp_path / "env.txt").read_text() == "false"



def test_the_accelerator_check_dry_run_passes_here(tmp_path):
    """CI runs the GPU check's CPU-safe parts: detection, the accelerator tests collect,
    the benchmark scripts and the table builder parse their arguments."""
    out = subprocess.run(["bash", str(ROOT / "benchmarks/accelerator_check.sh"), "--dry-run", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = (tmp_path / "summary.txt").read_text().split("\n")
    steps = [line.split()[0] for line in summary if line]
    assert steps == ["detect", "tests", "rnn-scan", "rnn-cudnn", "nmt-scan", "nmt-cudnn", "table", "repro"]
    assert all("exit=0" in line for line in summary if line)
    assert "6 tests collected" in (tmp_path / "tests.log").read_text()
    assert "--kernel {auto,scan,onednn,cudnn}" in (tmp_path / "rnn-scan.log").read_text()


def test_the_accelerator_check_refuses_a_machine_without_a_gpu(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "benchmarks/accelerator_check.sh"), str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, device.ENV: "cpu"})
    assert out.returncode == 2 and "no NVIDIA GPU here" in out.stderr
