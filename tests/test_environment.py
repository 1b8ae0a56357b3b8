"""environment.yml parses and pins the same TensorFlow as pyproject.toml."""
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tf_spec(requirements):
    for req in requirements:
        m = re.match(r"^tensorflow\s*([<>=!~].*)$", req.strip())
        if m:
            return m.group(1).replace(" ", "")
    return None


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    conda = [d for d in deps if isinstance(d, str)]
    env_tf = _tf_spec(pip)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py_tf = _tf_spec(project["dependencies"])
    assert env_tf and py_tf
    # both select TensorFlow 2.21
    assert "2.21" in env_tf and ">=2.21" in py_tf and "<2.22" in py_tf
    assert any(d.startswith("cuda-version=12.5") for d in conda)
    assert any(d.startswith("cudnn=9") for d in conda)
    assert any(d.startswith("python=3.11") for d in conda)
    assert any("-e ." in p for p in pip)


def test_readme_opens_with_the_two_setup_lines():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- setup:begin -->")[1].split("<!-- setup:end -->")[0]
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("```")]
    assert len(lines) == 2
    assert "kerasclf demo" in lines[0] and lines[1].startswith("pytest")
    assert text.index("<!-- setup:begin -->") < 1200  # near the top


def test_ci_installs_nothing_the_readme_does_not():
    """`.ci/run` runs the README's two lines verbatim: no pip install of its own (system packages aside)."""
    commands = [ln.split("#")[0] for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert not [c for c in commands if re.search(r"\bpip3?\b.*\binstall\b|\buv\b|\bconda\b", c)], commands
    assert any("setup:begin" in c for c in commands)  # the lines come from the README's block


def test_python_claim_matches_code():
    """README, pyproject and environment.yml agree on Python 3.11+ (the suite itself uses tomllib)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert sys.version_info >= (3, 11)
    readme = (ROOT / "README.md").read_text()
    assert "Python 3.11+" in readme and "3.10" not in readme
