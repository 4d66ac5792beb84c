"""Shared fixtures. The environment is pinned offline and quiet before jax is imported."""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from pathlib import Path

_TMP = tempfile.mkdtemp(prefix="rnnpipe-tests-")
for key, value in {
    "JAX_PLATFORMS": "cpu",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": f"{_TMP}/mpl",
    "SACREBLEU": f"{_TMP}/sacrebleu",
    "DVC_NO_ANALYTICS": "1",
    "DVC_STUDIO_OFFLINE": "1",
    "DVC_SITE_CACHE_DIR": f"{_TMP}/dvc-site",
    "DO_NOT_TRACK": "1",
    "PREFECT_HOME": f"{_TMP}/prefect",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # XLA without its expensive passes (what Flax's heavy example tests do): the tests check
    # logic, and where they compare numbers, both sides compile the same way; the stages and
    # commands they start inherit it. Compilation is most of the tests' time, and this
    # roughly halves it (benchmarks/results/test-tiers.md); set it to false to test with
    # the optimised code the pipeline runs.
    "JAX_DISABLE_MOST_OPTIMIZATIONS": "true",
}.items():
    os.environ.setdefault(key, value)

import pytest  # noqa: E402
import yaml  # noqa: E402

from pipeline import jax_cache  # noqa: E402
from pipeline import params as params_module  # noqa: E402

jax_cache.enable()  # the tests compile through the same per-user cache as the stages they start

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# The test files that take longest, longest first (benchmarks/results/test-tiers.md has the
# per-file seconds). `./dev test` hands whole files to a worker per core in collection order
# (`--dist loadfile --no-loadscope-reorder`); starting the long ones first keeps both cores
# busy to the end instead of leaving one to finish the end-to-end files alone.
LONGEST_FIRST = ("test_flows.py", "test_models.py", "test_profiles.py", "test_e2e.py", "test_stages.py",
                 "test_nmt_options.py", "test_resume.py", "test_translation.py", "test_rnn.py", "test_cudnn.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


# What XLA compiled in the test processes (pipeline/jax_cache.py counts it), summed over the
# xdist workers and printed under the results: how much of a run is compilation, and how
# much the per-user cache served (stages started as subprocesses print their own line).
_compiled: list[dict] = []


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counts to the controller
        workeroutput["jax_compilation"] = jax_cache.counts()
    else:
        _compiled.append(jax_cache.counts())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    if counts := getattr(node, "workeroutput", {}).get("jax_compilation"):
        _compiled.append(counts)


def pytest_terminal_summary(terminalreporter):
    total = {k: sum(c[k] for c in _compiled) for k in ("compiled", "compile_seconds", "loaded", "saved_seconds")}
    if total["compiled"] or total["loaded"]:
        terminalreporter.write_line(
            f"XLA in the test processes: {total['compiled']} programs compiled in {total['compile_seconds']:.0f} s, "
            f"{total['loaded']} loaded from the compilation cache ({total['saved_seconds']:.0f} s saved)")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_overrides(root: Path | None = None) -> dict:
    """params.yaml overrides that shrink every workload to seconds, on real fixture bytes.

    Source paths are absolute, or relative to ``root`` when it is given (a repo copy).
    """
    rel = lambda path: str(path.relative_to(ROOT)) if root is not None else str(path)
    nmt_src, lm_src = FIXTURES / "fra-eng-excerpt.txt", FIXTURES / "shakespeare-head.txt"
    prices = ROOT / "data/embedded/coindesk/bpi-close-2010-07-18_2018-11-20.json"
    return {
        "sources": {
            "nmt": {"url": rel(nmt_src), "sha256": sha256_of(nmt_src)},
            "charlm": {"url": rel(lm_src), "sha256": sha256_of(lm_src)},
            "forecast": {"url": rel(prices)},
        },
        "nmt": {
            "data": {"max_pairs": 1000, "valid_size": 20, "test_size": 30, "min_freq": 1,
                     "max_len": 6, "buckets": [4, 7]},
            "model": {"embed": 16, "hidden": 16},
            "train": {"steps": 6, "batch_size": 8, "log_every": 3, "warmup_steps": 1},
            "decode": {"batch_size": 16},
        },
        "charlm": {
            "model": {"embed": 8, "hidden": 16},
            # a peak rate at which 6 steps of the default schedule teach the tiny model enough
            # for its samples to depend on the temperature
            "train": {"steps": 6, "batch_size": 4, "seq_len": 8, "log_every": 3, "checkpoint_every": 3,
                      "warmup_steps": 1, "learning_rate": 0.05},
            "sample": {"length": 20, "every": 3},
        },
        "forecast": {
            "data": {"stride": 5},  # a fifth of the test windows: AutoARIMA fits each one
            "model": {"hidden": 8, "layers": 1},
            "train": {"steps": 6, "batch_size": 8, "log_every": 3, "seeds": 2},
            "intervals": {"calibration_days": 60},
            "backtest": {"every": 180, "folds": 2},
            "evaluate": {"plot_windows": 2},
        },
    }


def merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture(scope="session")
def real_params_dict() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_params_dict(real_params_dict) -> dict:
    return merge(real_params_dict, tiny_overrides())


@pytest.fixture(scope="session")
def tiny_params(tiny_params_dict) -> params_module.Params:
    return params_module.from_dict(tiny_params_dict)
