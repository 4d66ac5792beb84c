"""The command line: --help explains, and bad params fail with exit 2 and the key."""

from __future__ import annotations

import yaml

from .conftest import ROOT
from .helpers import run_cli


def test_help_lists_every_stage():
    out = run_cli("--help")
    assert out.returncode == 0
    for stage in ("download", "prepare_nmt", "train_charlm", "evaluate_forecast"):
        assert stage in out.stdout


def test_params_typo_exits_2_naming_the_key(tmp_path, real_params_dict):
    bad = dict(real_params_dict, charlm=dict(real_params_dict["charlm"], sampel={}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    out = run_cli("prepare_charlm", "--params", str(tmp_path / "params.yaml"))
    assert out.returncode == 2
    assert "unknown key 'sampel' in section 'charlm'" in out.stderr


def test_unknown_cell_and_missing_variant():
    out = run_cli("train_nmt", "rnn")
    assert out.returncode == 2 and "cell 'rnn' is not in nmt.model.cells" in out.stderr
    out = run_cli("train_nmt")
    assert out.returncode == 2 and "needs a variant" in out.stderr


def test_bad_input_prints_the_message_not_a_traceback(tmp_path, real_params_dict):
    doc = dict(real_params_dict)
    doc["sources"] = dict(doc["sources"], charlm=dict(doc["sources"]["charlm"], sha256="0" * 64,
                                                      url=str(ROOT / doc["sources"]["charlm"]["url"]),
                                                      raw=str(tmp_path / "input.txt")))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    out = run_cli("download", "charlm", "--params", str(tmp_path / "params.yaml"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and "sha256 mismatch" in out.stderr
    assert not (tmp_path / "input.txt").exists()


def test_a_forced_kernel_that_cannot_run_is_one_line_naming_the_key(tmp_path, real_params_dict):
    """kernel: cudnn on this CPU, and kernel: onednn where the kernel cannot be built (a
    broken compiler, an empty kernel cache): exit 2 and the key, before any work."""
    cxx = tmp_path / "cxx"
    cxx.write_text("#!/bin/sh\necho 'lstm_onednn.cc:1:1: error: no' >&2\nexit 1\n")
    cxx.chmod(0o755)
    for kernel, why in (("cudnn", "cuDNN needs an NVIDIA GPU; JAX is running on 'cpu'"),
                        ("onednn", "the oneDNN LSTM kernel cannot run here (compiling")):
        doc = dict(real_params_dict, charlm=dict(real_params_dict["charlm"],
                                                 model=dict(real_params_dict["charlm"]["model"], kernel=kernel)))
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
        out = run_cli("train_charlm", "lstm", "--params", str(tmp_path / "params.yaml"),
                      env={"CXX": str(cxx), "RNNPIPE_KERNEL_CACHE": str(tmp_path / "kernels")})
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith(f"error: {tmp_path / 'params.yaml'}: 'charlm.model.kernel' is '{kernel}', but {why}")
        assert "set it to auto" in line
