"""rnnpipe's runtime environment (pipeline/runtime.py): what it adds, what it keeps, and
that ``python -m pipeline`` and ``./dev`` really run with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline import runtime

ROOT = Path(__file__).resolve().parents[1]


ALL = ":".join(runtime.TUNABLES)


def test_environment_adds_the_malloc_tunables_and_keeps_the_users():
    assert runtime.environment({})["GLIBC_TUNABLES"] == ALL
    env = runtime.environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.rtld.x=1", "HOME": "/x"})
    ours = [t for t in runtime.TUNABLES if not t.startswith("glibc.malloc.arena_max=")]
    assert env["GLIBC_TUNABLES"] == ":".join(["glibc.malloc.arena_max=2", "glibc.rtld.x=1", *ours])
    assert env["HOME"] == "/x"


def test_a_users_own_settings_win_and_the_switch_turns_them_off():
    mine = {"GLIBC_TUNABLES": ":".join(t.split("=")[0] + "=0" for t in runtime.TUNABLES)}
    assert runtime.environment(mine) == mine
    assert runtime.applied(mine)
    off = {"RNNPIPE_RUNTIME_ENV": "0"}
    assert runtime.environment(off) == off
    assert not runtime.applied({})


def _child_env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "RNNPIPE_RUNTIME_ENV",
                                                            "RNNPIPE_RUNTIME_ENV_EXECED")}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def test_ensure_reexecutes_the_process_once_with_the_tunable(tmp_path):
    script = tmp_path / "entry.py"
    script.write_text("import os, sys\nfrom pipeline import runtime\nprint('start', flush=True)\n"
                      "runtime.ensure([__file__, *sys.argv[1:]])\nprint(os.environ.get('GLIBC_TUNABLES'))\n")
    run = lambda **extra: subprocess.run([sys.executable, str(script)], env=_child_env(**extra),
                                         capture_output=True, text=True, check=True).stdout.split()
    assert run() == ["start", "start", ALL]  # ran twice, the second time with the tunables
    assert run(GLIBC_TUNABLES=ALL) == ["start", ALL]  # already there: once
    assert run(RNNPIPE_RUNTIME_ENV="0") == ["start", "None"]


def test_the_stage_entry_point_and_dev_set_the_same_tunables(tmp_path):
    env = _child_env()
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], env=env, capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.count("usage: python -m pipeline") == 1  # re-executed once, printed once
    assert "runtime.ensure" in (ROOT / "pipeline" / "__main__.py").read_text()
    # ./dev asks runtime.py (with the system Python, before the venv exists) what to export
    printed = lambda **extra: subprocess.run(["python3", "pipeline/runtime.py"], env=_child_env(**extra),
                                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert printed() == ALL
    assert printed(GLIBC_TUNABLES="glibc.malloc.hugetlb=0") == "glibc.malloc.hugetlb=0:" + ALL.split(":", 1)[1]
    assert printed(RNNPIPE_RUNTIME_ENV="0") == ""
    assert '"$PYTHON" pipeline/runtime.py' in (ROOT / "dev").read_text()


def test_the_settings_hold_xla_temporaries_in_place():
    """With the settings a train step touches no fresh memory; without, thousands of pages."""
    probe = ("import resource, jax, jax.numpy as jnp\n"
             "f = jax.jit(lambda x: jnp.tanh(x @ x.T) @ x + 1.0)\n"
             "x = jnp.ones((2048, 2048))\n"
             "for _ in range(3): f(x).block_until_ready()\n"
             "a = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
             "for _ in range(5): f(x).block_until_ready()\n"
             "print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - a) / 5)\n")
    faults = lambda env: float(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                                              text=True, check=True).stdout)
    assert faults(runtime.environment(_child_env(JAX_PLATFORMS="cpu"))) < 50
    assert faults(_child_env(JAX_PLATFORMS="cpu", RNNPIPE_RUNTIME_ENV="0")) > 1000
