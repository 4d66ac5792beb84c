"""The DVC contract: every pipeline module a stage imports is a declared dep.

A missing dep means a code change that DVC does not see, and a stale result that
nobody notices; a dep on a module the stage never imports reruns work for nothing.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pipeline"


def module_file(name: str) -> Path | None:
    """Path of a ``pipeline.*`` module, or None for anything outside the package."""
    if name != "pipeline" and not name.startswith("pipeline."):
        return None
    rel = Path(*name.split("."))
    for candidate in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def sources_of(path: Path) -> set[Path]:
    """Files beside a module that it reads as source, ``Path(__file__).with_name("x")``
    (pipeline/kernels/onednn.py compiles lstm_onednn.cc): part of that module's code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "with_name"
                and ast.unparse(node.func.value) == "Path(__file__)" and node.args
                and isinstance(node.args[0], ast.Constant)):
            found.add(path.with_name(node.args[0].value))
    return found


def closure(start: Path) -> set[Path]:
    """Every pipeline source file reachable by imports from ``start``, with the files
    those modules compile (:func:`sources_of`)."""
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path.suffix != ".py":
            continue
        todo.extend(sources_of(path))
        for name in imports_of(path):
            found = module_file(name)
            if found is not None:
                todo.append(found)
    # Package __init__ files hold docstrings only; they are not code a stage depends on.
    return {p for p in seen if p.name != "__init__.py"}


def stages():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in dvc.items():
        body = spec.get("do", spec)
        module = body["cmd"].split()[3]
        yield name, module, body["deps"]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps if not d.startswith("$"))


@pytest.mark.parametrize("stage,module,deps", list(stages()), ids=[s[0] for s in stages()])
def test_every_imported_module_is_a_dep(stage, module, deps):
    needed = closure(PKG / "stages" / f"{module}.py")
    missing = sorted(str(p.relative_to(ROOT)) for p in needed if not covered(p, deps))
    assert not missing, f"dvc.yaml stage '{stage}' imports these but does not list them: {missing}"


@pytest.mark.parametrize("stage,module,deps", list(stages()), ids=[s[0] for s in stages()])
def test_no_dep_on_code_the_stage_does_not_import(stage, module, deps):
    needed = closure(PKG / "stages" / f"{module}.py")
    code_deps = [d for d in deps if d.startswith("pipeline/")]
    unused = [d for d in code_deps if not any(covered(p, [d]) for p in needed)]
    assert not unused, f"dvc.yaml stage '{stage}' depends on code it never imports: {unused}"


@pytest.mark.parametrize("stage,module,deps", list(stages()), ids=[s[0] for s in stages()])
def test_code_deps_are_single_modules(stage, module, deps):
    """A directory dep would rerun the stage when an unrelated module in it changes."""
    dirs = [d for d in deps if d.startswith("pipeline") and (ROOT / d).is_dir()]
    assert not dirs, f"dvc.yaml stage '{stage}' depends on whole directories: {dirs}"


def test_a_compiled_source_is_part_of_the_module_that_builds_it():
    needed = closure(PKG / "stages" / "train_charlm.py")
    assert PKG / "kernels" / "lstm_onednn.cc" in needed  # through models/rnn.py -> kernels/onednn.py
    assert PKG / "kernels" / "lstm_onednn.cc" not in closure(PKG / "stages" / "prepare_charlm.py")


def test_every_stage_module_has_a_dvc_stage():
    declared = {module for _, module, _ in stages()}
    modules = {p.stem for p in (PKG / "stages").glob("*.py") if p.stem != "__init__"}
    assert modules == declared


def params_read(path: Path) -> set[str]:
    """Dotted params.yaml keys a stage module reads: chains from ``params`` (the loaded
    file), followed through local names bound to a section (``p = params.nmt``,
    ``p, t = params.nmt, params.nmt.train``, ``s = p.sample``). A section handed whole
    to the checkpoint fingerprint is not a read: checkpoints are not DVC outputs."""
    tree = ast.parse(path.read_text())
    alias: dict[str, str] = {"params": ""}

    def chain(node: ast.AST) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in alias:
            base = alias[node.id]
            return ".".join(([base] if base else []) + parts[::-1])
        return None

    for node in ast.walk(tree):  # aliases first (stage modules bind them before use)
        if isinstance(node, ast.Assign):
            targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else node.targets
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for t, v in zip(targets, values, strict=False):  # `a, b = f()`: one value, no alias
                if isinstance(t, ast.Name) and (c := chain(v)) is not None and c:
                    alias[t.id] = c
    skip = {id(a) for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("for_run")
            for a in ast.walk(n)}
    reads = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in skip and (c := chain(node)):
            reads.add(c)
    # keep the longest chains only (``p.data.buckets`` also yields ``p.data``), and
    # drop method calls on values (``...buckets.index``) by keeping what params.yaml has
    return {r for r in reads if not any(o.startswith(r + ".") for o in reads)}


def yaml_has(key: str) -> bool:
    node = yaml.safe_load((ROOT / "params.yaml").read_text())
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# Read by a stage but deliberately not a DVC param: changing it must not rerun anything.
NOT_RESULTS = {"forecast.baselines.workers": "worker processes; the forecasts do not depend on them"}


@pytest.mark.parametrize("stage,module,deps", list(stages()), ids=[s[0] for s in stages()])
def test_every_params_key_a_stage_reads_is_declared(stage, module, deps):
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    declared = [d.replace("${key}", "*") for d in spec.get("do", spec).get("params", [])]
    reads = {r for r in params_read(PKG / "stages" / f"{module}.py") if yaml_has(r.split(".", 1)[0])}
    assert reads, f"found no params read by {module}.py (is the analysis blind?)"

    def covered(key: str) -> bool:
        return key in NOT_RESULTS or any(
            key == d or key.startswith(d + ".")
            or (d.endswith("*") and (key + ".").startswith(d[:-1]))  # sources.${key}; sources[workload]
            for d in declared)

    missing = sorted(r for r in reads if yaml_has(r) and not covered(r))
    assert not missing, f"dvc.yaml stage '{stage}' reads params it does not declare: {missing}"


@pytest.fixture(scope="module")
def committed_copy(tmp_path_factory) -> Path:
    """The code, dvc.yaml, dvc.lock and params.yaml, committed to a fresh git + DVC repo."""
    from .helpers import sh

    repo = tmp_path_factory.mktemp("rerun")
    shutil.copytree(PKG, repo / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config", ".dvc/.gitignore"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "committed")
    return repo


def stages_rerun_by(repo: Path, edited: str) -> set[str]:
    """Stages that ``dvc status`` says changed because of ``edited`` (a comment appended,
    then undone): what ``dvc repro`` would rerun for that edit."""
    from .helpers import dvc

    path = repo / edited
    before = path.read_bytes()
    path.write_bytes(before + b"\n# an edit\n")
    try:
        status = json.loads(dvc(repo, "status", "--json").stdout)
    finally:
        path.write_bytes(before)
    return {stage for stage, changes in status.items() for change in changes if isinstance(change, dict)
            and edited in change.get("changed deps", {})}


@pytest.mark.parametrize("model, workload", [("charlm", "charlm"), ("seq2seq", "nmt"), ("attention", "nmt"),
                                             ("forecaster", "forecast")])
def test_editing_a_model_reruns_only_its_workload(committed_copy, model, workload):
    cells = yaml.safe_load((ROOT / "params.yaml").read_text())[workload]["model"]["cells"]
    expected = {f"{kind}_{workload}@{cell}" for kind in ("train", "evaluate") for cell in cells}
    if workload == "forecast":
        expected.add("backtest_forecast")  # it trains the forecaster at every fold
    assert stages_rerun_by(committed_copy, f"pipeline/models/{model}.py") == expected


def test_imports_run_one_way():
    """library <- stages/commands <- flows: no library module imports a stage, a command
    or a flow, and a workload's stages reach only that workload's model."""
    upper = ("pipeline.stages", "pipeline.commands", "pipeline.cli", "flows")
    wrong = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[1] in ("stages", "commands", "cli.py", "__main__.py"):
            continue
        wrong += [f"{rel} imports {name}" for name in imports_of(path) if name.startswith(upper)]
    assert not wrong
    models = {"nmt": "seq2seq.py", "charlm": "charlm.py", "forecast": "forecaster.py"}
    for stage in (PKG / "stages").glob("[a-z]*_*.py"):
        workload = stage.stem.split("_", 1)[1]
        reached = {p.name for p in closure(stage) if p.parent.name == "models"}
        assert not reached & (set(models.values()) - {models[workload]}), f"{stage.stem} reaches {reached}"
