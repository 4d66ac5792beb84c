"""Committing a refresh to a git branch nobody has checked out, on real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline.serving import branch

from .helpers import sh


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "git", "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("/serving/\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\n")
    (repo / "notes.txt").write_text("the user's work\n")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "start")
    return repo


def test_commits_land_on_the_branch_and_nowhere_else(repo):
    (repo / "notes.txt").write_text("uncommitted work in progress\n")  # the user's, untouched
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {a: 1}\n")
    (repo / "serving/forecast").mkdir(parents=True)
    (repo / "serving/forecast/decisions.jsonl").write_text('{"promoted": true}\n')  # ignored, still recorded
    head, status = git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")
    first = branch.commit(repo, "refreshes", ["dvc.lock", "serving/forecast/decisions.jsonl", "missing.json"],
                          "refresh 1")
    assert first and git(repo, "rev-parse", "refreshes") == first
    assert git(repo, "rev-parse", "refreshes~1") == head  # a new branch starts from HEAD
    assert git(repo, "show", "refreshes:serving/forecast/decisions.jsonl") == '{"promoted": true}'
    assert git(repo, "show", "refreshes:dvc.lock") == "schema: '2.0'\nstages: {a: 1}"
    assert git(repo, "show", "refreshes:notes.txt") == "the user's work"  # not in the list: as HEAD has it
    assert git(repo, "log", "-1", "--format=%s", "refreshes") == "refresh 1"
    # the user's branch, index and work tree are as they were
    assert branch.current_branch(repo) == "main" and git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == status
    assert (repo / "notes.txt").read_text() == "uncommitted work in progress\n"

    assert branch.commit(repo, "refreshes", ["dvc.lock"], "refresh 2") is None  # nothing changed: no commit
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {a: 2}\n")
    second = branch.commit(repo, "refreshes", ["dvc.lock"], "refresh 3")
    assert git(repo, "rev-parse", "refreshes~1") == first and git(repo, "rev-parse", "refreshes") == second
    assert git(repo, "diff", "--name-only", "refreshes~1", "refreshes") == "dvc.lock"


@pytest.mark.parametrize("name, message", [
    ("main", r"'forecast.serve.branch' is 'main', the branch checked out in .*never commits on your branch"),
    ("bad..name", r"'forecast.serve.branch' is 'bad..name': not a valid git branch name"),
])
def test_the_checked_out_branch_and_bad_names_are_refused(repo, name, message):
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(branch.BranchError, match=message):
        branch.commit(repo, name, ["dvc.lock"], "never")
    assert git(repo, "rev-parse", "HEAD") == head


def test_a_branch_checked_out_in_another_worktree_is_refused(repo, tmp_path):
    sh(repo, "git", "worktree", "add", "-q", "-b", "elsewhere", str(tmp_path / "wt"))
    with pytest.raises(branch.BranchError, match="which a git worktree has checked out"):
        branch.check(repo, "elsewhere")


def test_outside_a_git_repository_is_an_error(tmp_path):
    with pytest.raises(branch.BranchError, match="is not a git repository"):
        branch.check(tmp_path, "refreshes")


def test_a_service_account_without_a_git_identity_commits_as_rnnpipe(repo, monkeypatch):
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (repo / "dvc.lock").write_text("changed\n")
    assert branch.commit(repo, "refreshes", ["dvc.lock"], "refresh")
    assert git(repo, "log", "-1", "--format=%an <%ae>", "refreshes") == "rnnpipe refresh <rnnpipe@localhost>"
