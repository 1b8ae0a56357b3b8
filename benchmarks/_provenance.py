"""The commit a recorded result re-runs from: one rule for every script that writes ``benchmarks/results/``.

A result is recorded from a committed tree: :func:`recorded_commit` returns HEAD's short hash and
refuses (:class:`DirtyTree`, exit 2 in the scripts) when tracked or untracked files that can change a
result differ from it. The files the scripts themselves write (``benchmarks/results/``, the Markdown
the harness regenerates: ``docs/*.md``, ``README.md``) do not count, so recording one result does not
block the next. ``--allow-dirty`` (:func:`add_allow_dirty`) records anyway, with the commit marked
``+dirty``: that row does not re-run from the commit it names.

Example:
    >>> recorded_commit()                        # doctest: +SKIP
    'ec20210'
"""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

__all__ = ["DirtyTree", "recorded_commit", "add_allow_dirty", "commit_or_exit", "changed_files", "DIRTY_MARK",
           "write_block"]

ROOT = Path(__file__).resolve().parents[1]
DIRTY_MARK = "+dirty"
#: what the result scripts write themselves (folders, files): a change there cannot change a result
OUTPUT_DIRS, OUTPUT_FILES = ("benchmarks/results/", "docs/"), ("README.md",)


class DirtyTree(RuntimeError):
    """The tree has uncommitted changes that could change a result; the message names them and the fix."""


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise DirtyTree(f"{root} is not a git checkout ({out.stderr.strip()[:200]}); results are recorded "
                        f"from a commit")
    return out.stdout


def changed_files(root: Path | None = None) -> list[str]:
    """Tracked files changed since HEAD and untracked files git does not ignore, outside the outputs
    (:data:`OUTPUT_DIRS`, :data:`OUTPUT_FILES`)."""
    paths = []
    for line in _git(root or ROOT, "status", "--porcelain", "--untracked-files=all").splitlines():
        path = line[3:].split(" -> ")[-1].strip('"')
        if not (path.startswith(OUTPUT_DIRS) or path in OUTPUT_FILES):
            paths.append(path)
    return paths


def recorded_commit(allow_dirty: bool = False, root: Path | None = None) -> str:
    """HEAD's short hash, the commit a result re-runs from (``root``: the checkout, default this one).

    Raises:
        DirtyTree: files that could change a result are uncommitted and ``allow_dirty`` is false
            (with it the hash is returned marked :data:`DIRTY_MARK`).
    """
    root = root or ROOT
    commit = _git(root, "rev-parse", "--short", "HEAD").strip()
    changed = changed_files(root)
    if not changed:
        return commit
    if not allow_dirty:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise DirtyTree(f"uncommitted changes ({', '.join(changed[:5])}{more}): a result recorded now would not "
                        f"re-run from commit {commit}; commit them first, or pass --allow-dirty to record the "
                        f"row as {commit}{DIRTY_MARK}")
    return commit + DIRTY_MARK


def add_allow_dirty(parser: argparse.ArgumentParser) -> None:
    """The scripts' ``--allow-dirty`` flag."""
    parser.add_argument("--allow-dirty", action="store_true",
                        help=f"record from a tree with uncommitted changes (the commit is marked {DIRTY_MARK})")


def commit_or_exit(parser: argparse.ArgumentParser, allow_dirty: bool) -> str:
    """:func:`recorded_commit`, or the script stops at once with ``error: ...`` (exit 2), before any work."""
    try:
        return recorded_commit(allow_dirty)
    except DirtyTree as exc:
        parser.error(str(exc))
        raise  # parser.error exits; this line is never reached


def write_block(path: Path, name: str, text: str, *, required: bool = True) -> bool:
    """Replace what sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in ``path`` with
    ``text`` (the generated tables of docs/*.md and README.md). Without the markers: exit with the
    reason, or return ``False`` when not ``required``.

    Example:
        >>> write_block(Path("docs/benchmarks.md"), "review_loop", "| a |\\n")     # doctest: +SKIP
    """
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    current = path.read_text()
    if begin not in current or end not in current:
        if required:
            raise SystemExit(f"{path}: no {begin.strip()} ... {end} block to write the table into")
        return False
    head, rest = current.split(begin, 1)
    path.write_text(head + begin + text + end + rest.split(end, 1)[1])
    return True
