"""Commit a refresh's results to a git branch that nobody has checked out.

The scheduled refresh (``forecast.serve.branch``) records what it changed (``dvc.lock``,
the forecaster's metrics, the decision log and the latest forecast) as one commit on a
named branch, so that ``dvc metrics diff <branch>~1 <branch>`` and ``rnnpipe report
<branch>~1 <branch>`` compare one refresh with the one before.

The commit is built with git's plumbing (a private index file, ``write-tree``,
``commit-tree``, ``update-ref``): the work tree, the real index and the branch the user
is on are never touched, and committing to the branch the user is on is refused. The
branch starts from ``HEAD`` the first time; each later refresh adds one commit on top,
or none when nothing changed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PipelineError


class BranchError(PipelineError, RuntimeError):
    """The refresh cannot commit to the branch it was given; the message says why."""


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, input=stdin,
                          env=None if env is None else {**os.environ, **env})
    if done.returncode != 0:
        raise BranchError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def current_branch(repo: str | Path) -> str | None:
    """The branch checked out in ``repo``, or None on a detached HEAD."""
    done = subprocess.run(["git", "symbolic-ref", "--quiet", "--short", "HEAD"], cwd=repo, capture_output=True,
                          text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def check(repo: str | Path, branch: str) -> None:
    """Raise :class:`BranchError` unless ``repo`` is a git work tree and ``branch`` is a
    valid branch name other than the one checked out (nor checked out in another worktree)."""
    repo = Path(repo)
    if subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=repo, capture_output=True).returncode:
        raise BranchError(f"params.yaml: 'forecast.serve.branch' is {branch!r}, but {repo} is not a git repository")
    if subprocess.run(["git", "check-ref-format", "--branch", branch], cwd=repo, capture_output=True).returncode:
        raise BranchError(f"params.yaml: 'forecast.serve.branch' is {branch!r}: not a valid git branch name")
    if branch == current_branch(repo):
        raise BranchError(f"params.yaml: 'forecast.serve.branch' is {branch!r}, the branch checked out in {repo}: "
                          "the refresh never commits on your branch; name another one")
    worktrees = _git(repo, "worktree", "list", "--porcelain").splitlines()
    if f"branch refs/heads/{branch}" in worktrees:
        raise BranchError(f"params.yaml: 'forecast.serve.branch' is {branch!r}, which a git worktree has checked "
                          "out; name another one")


def commit(repo: str | Path, branch: str, paths: Sequence[str | Path], message: str) -> str | None:
    """Commit the current content of ``paths`` (relative to ``repo``; files, tracked or
    ignored alike; a missing one is left as the branch has it) to ``branch`` on top of its
    tip (of ``HEAD`` for a new branch), without touching the work tree, the index or the
    checked-out branch. A repository with no ``user.email`` configured (a service
    account) commits as "rnnpipe refresh". Returns the new commit, or None when the branch already holds
    exactly this content. Raises :class:`BranchError` for the checked-out branch."""
    repo = Path(repo)
    check(repo, branch)
    ref = f"refs/heads/{branch}"
    exists = subprocess.run(["git", "rev-parse", "--verify", "--quiet", ref], cwd=repo, capture_output=True,
                            text=True)
    parent = exists.stdout.strip() if exists.returncode == 0 else _git(repo, "rev-parse", "HEAD")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", parent, env=env)
        for rel in paths:
            path = repo / rel
            if not path.is_file():
                continue
            blob = _git(repo, "hash-object", "-w", "--", str(path))
            mode = "100755" if os.access(path, os.X_OK) else "100644"
            _git(repo, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{Path(rel).as_posix()}", env=env)
        tree = _git(repo, "write-tree", env=env)
    if tree == _git(repo, "rev-parse", f"{parent}^{{tree}}"):
        return None
    named = subprocess.run(["git", "config", "user.email"], cwd=repo, capture_output=True).returncode == 0
    who = {} if named else {f"GIT_{role}_{field}": value for role in ("AUTHOR", "COMMITTER")
                            for field, value in (("NAME", "rnnpipe refresh"), ("EMAIL", "rnnpipe@localhost"))}
    new = _git(repo, "commit-tree", tree, "-p", parent, stdin=message + "\n", env=who)
    # Only if the branch is still where we read it: a concurrent writer is an error, not lost work.
    _git(repo, "update-ref", "-m", "rnnpipe refresh", ref, new, parent if exists.returncode == 0 else "0" * 40)
    return new
