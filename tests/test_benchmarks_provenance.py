"""A result row re-runs from the commit it names: the benchmark scripts refuse to record from a tree
with uncommitted changes unless --allow-dirty, which marks the row (benchmarks/_provenance.py)."""
import subprocess
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def provenance(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _provenance
    return _provenance


def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    for rel in ("kerasclf/a.py", "benchmarks/results/accuracy.json", "docs/results.md", "README.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x\n")
    _git(root.parent, "init", "-q", str(root))
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "c")
    return root


def test_a_dirty_tree_is_refused_unless_allowed_and_then_marked(repo, provenance):
    head = _git(repo, "rev-parse", "--short", "HEAD")
    assert provenance.recorded_commit(root=repo) == head
    for rel in ("benchmarks/results/accuracy.json", "docs/results.md", "README.md"):  # what the scripts write
        (repo / rel).write_text("a result\n")
    assert provenance.recorded_commit(root=repo) == head  # recording one result does not block the next
    (repo / "kerasclf" / "a.py").write_text("changed\n")
    (repo / "kerasclf" / "new.py").write_text("untracked\n")
    with pytest.raises(provenance.DirtyTree, match=r"kerasclf/a\.py, kerasclf/new\.py.*--allow-dirty"):
        provenance.recorded_commit(root=repo)
    assert provenance.recorded_commit(allow_dirty=True, root=repo) == head + "+dirty"


def test_the_accuracy_harness_stops_before_running_anything(repo, provenance, monkeypatch, tmp_path, capsys):
    import accuracy
    monkeypatch.setattr(provenance, "ROOT", repo)
    results = tmp_path / "accuracy.json"
    monkeypatch.setattr(accuracy, "RESULTS", results)
    monkeypatch.setattr(accuracy, "offline_keras_home", lambda *a: pytest.fail("ran past the check"))
    (repo / "kerasclf" / "a.py").write_text("changed\n")
    with pytest.raises(SystemExit) as stop:
        accuracy.main(["--only", "digits_demo"])
    assert stop.value.code == 2 and "--allow-dirty" in capsys.readouterr().err and not results.exists()
    rows = [{"experiment": "digits_demo", "data": "d", "model": "m", "mode": "scratch", "metric": "accuracy",
             "value": 0.98, "goal": ">= 0.95", "passed": True, "anchor": "—", "wall_s": 60, "commit": c,
             "date": "2026-01-01", "host": "h", "command": "python benchmarks/accuracy.py --only digits_demo"}
            for c in ("abc1234+dirty", "abc1234")]
    assert "0.980 ‡" in accuracy.render_table(rows[:1]) and "‡" not in accuracy.render_table(rows)  # the table says so
