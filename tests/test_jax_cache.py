"""The persistent compilation cache every rnnpipe process uses (pipeline/jax_cache.py):
where it lives, what names its folder, that a second process reads what the first wrote,
that the floats are the same, and that two processes filling it at once both finish."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import jax_cache
from pipeline.kernels import onednn

ROOT = Path(__file__).resolve().parents[1]

# A tiny program with a scan, compiled through the cache in a process of its own; prints
# its result's bytes, how many compilations the cache served (JAX's own event) and what
# jax_cache counted.
PROGRAM = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax import monitoring
from pipeline import jax_cache
hits = []
monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
folder = jax_cache.enable()

@jax.jit
def f(x):
    return jax.lax.scan(lambda c, v: (jnp.tanh(c @ x + v), c), jnp.ones(8), x)[0]

out = np.asarray(f(jnp.arange(64.0).reshape(8, 8) / 64))
print(json.dumps({"folder": str(folder), "hits": len(hits), "out": out.tobytes().hex(), "counts": jax_cache.counts(),
                  "summary": jax_cache.summary()}))
"""


def run_program(cache: str, count: int = 1, quiet: bool = True) -> list[dict]:
    env = {**os.environ, jax_cache.ENV: cache}
    procs = [subprocess.Popen([sys.executable, "-c", PROGRAM], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(count)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        if quiet:  # no read or write warning
            assert "persistent compilation cache" not in stderr.lower(), stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    return outs


def test_the_folder_follows_the_variable_and_defaults_to_the_user_cache(tmp_path):
    assert jax_cache.base_dir({jax_cache.ENV: str(tmp_path / "c")}) == tmp_path / "c"
    for off in ("0", "off", "OFF", ""):
        assert jax_cache.base_dir({jax_cache.ENV: off}) is None
    assert jax_cache.base_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "rnnpipe" / "jax"
    assert jax_cache.base_dir({}) == Path.home() / ".cache" / "rnnpipe" / "jax"


def test_a_rebuilt_kernel_or_another_cpu_gets_its_own_folder(monkeypatch):
    before = jax_cache.key_name()
    assert jax_cache.kernel_build() in before and jax_cache.cpu_fingerprint() in before
    monkeypatch.setattr(onednn, "library_path", lambda: Path("/k/lstm_onednn-0123456789abcdef.so"))
    rebuilt = jax_cache.key_name()
    assert rebuilt != before and "onednn0123456789abcdef" in rebuilt
    monkeypatch.setattr(jax_cache, "cpu_fingerprint", lambda: "another")
    assert jax_cache.key_name() not in (before, rebuilt)

    def no_compiler():
        raise onednn.Unavailable("no C++ compiler")

    monkeypatch.setattr(onednn, "library_path", no_compiler)
    assert jax_cache.kernel_build() == "none"


def test_a_second_process_reads_what_the_first_wrote_and_gets_the_same_floats(tmp_path):
    first, = run_program(str(tmp_path))
    folder = Path(first["folder"])
    assert folder.parent == tmp_path and folder.name == jax_cache.key_name()
    assert first["hits"] == 0 and any(folder.glob("*-cache"))
    assert first["counts"]["compiled"] > 0 and first["counts"]["loaded"] == 0
    second, = run_program(str(tmp_path))
    assert second["hits"] > 0
    assert second["out"] == first["out"]
    # the count a stage prints: what the cache served, and what was compiled all the same
    assert second["counts"]["loaded"] == second["hits"]
    assert second["counts"]["compiled"] < first["counts"]["compiled"]
    assert f"{second['hits']} loaded from the cache" in second["summary"]


def test_the_variable_turns_it_off(tmp_path):
    off, = run_program("0")
    assert off["folder"] == "None" and off["hits"] == 0


@pytest.mark.slow
def test_two_processes_filling_one_folder_at_once_both_finish(tmp_path):
    # one may catch an entry the other is still writing: a warning and a compilation, never a failure
    a, b = run_program(str(tmp_path), count=2, quiet=False)
    assert a["out"] == b["out"]
    third, = run_program(str(tmp_path))
    assert third["hits"] > 0 and third["out"] == a["out"]


def test_stages_that_compute_fill_the_cache_and_the_others_never_load_jax(tmp_path, tiny_params_dict):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params_dict))
    env = {**os.environ, jax_cache.ENV: str(tmp_path / "cache")}

    def stage(*args):
        done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "compilation:" not in stage("download", "charlm") + stage("prepare_charlm")
    assert not (tmp_path / "cache").exists()  # neither imported jax, so neither made the folder
    line = stage("train_charlm", "lstm").strip().splitlines()[-1]
    assert any((tmp_path / "cache").glob("*/*-cache"))
    compiled = re.fullmatch(r"compilation: (\d+) programs? compiled in [\d.]+ s, \d+ loaded from the cache "
                            r"\([\d.]+ s saved\)", line)
    assert compiled and int(compiled[1]) > 0, line
