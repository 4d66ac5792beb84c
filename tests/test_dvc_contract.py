"""The DVC contract: every pipeline module a stage imports is a declared dep.

A missing dep means a code change that DVC does not see, and a stale result that
nobody notices; a dep on a module the stage never imports reruns work for nothing.
"""

from __future__ import annotations

import ast
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
