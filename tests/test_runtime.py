"""rnnpipe's runtime environment (pipeline/runtime.py): what it adds, what it keeps, and
that ``python -m pipeline`` and ``./dev`` really run with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline import runtime

ROOT = Path(__file__).resolve().parents[1]


def test_environment_adds_the_malloc_tunable_and_keeps_the_users():
    assert runtime.environment({})["GLIBC_TUNABLES"] == runtime.TUNABLE
    env = runtime.environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "HOME": "/x"})
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{runtime.TUNABLE}"
    assert env["HOME"] == "/x"


def test_a_users_own_hugetlb_setting_wins_and_the_switch_turns_it_off():
    mine = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
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
    run = lambda **extra: subprocess.run([sys.executable, str(script)], env=_child_env(**extra),  # noqa: E731
                                         capture_output=True, text=True, check=True).stdout.split()
    assert run() == ["start", "start", runtime.TUNABLE]  # ran twice, the second time with the tunable
    assert run(GLIBC_TUNABLES=runtime.TUNABLE) == ["start", runtime.TUNABLE]  # already there: once
    assert run(RNNPIPE_RUNTIME_ENV="0") == ["start", "None"]


def test_the_stage_entry_point_and_dev_set_the_same_tunable():
    env = _child_env()
    out = subprocess.run([sys.executable, "-m", "pipeline", "--help"], env=env, capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.count("usage: python -m pipeline") == 1  # re-executed once, printed once
    assert runtime.TUNABLE in (ROOT / "dev").read_text()
    assert "runtime.ensure" in (ROOT / "pipeline" / "__main__.py").read_text()
