"""The suite passes with or without the optional extras: `pip install -e ".[dev]"` brings all of them
(README's first line), and every test that uses one (marked ``extras``) skips with the reason, or
still passes, on a machine where they are missing.

The check reruns the marked tests in a fresh pytest with every extra's modules made unimportable
(``sys.modules[name] = None`` from a ``sitecustomize``: ``import`` fails and
``importlib.util.find_spec`` answers ``None``, as on a machine without them).
"""
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from kerasclf.testing import quiet_env

REPO = Path(__file__).resolve().parents[1]
#: import names of the extras' packages where they differ from the package name
MODULE_OF = {"ai-edge-litert": "ai_edge_litert"}


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].strip()


def test_dev_brings_every_other_extra():
    extras = _extras()
    wanted = sorted(set(extras) - {"dev"})
    brought = {e for req in extras["dev"] if _name(req) == "kerasclf"
               for e in req[req.index("[") + 1:req.index("]")].split(",")}
    assert set(wanted) <= brought, f'dev must bring kerasclf[{",".join(wanted)}] so that `pytest` runs every test'


def test_tests_using_an_extra_skip_or_pass_without_it(tmp_path):
    modules = sorted({MODULE_OF.get(_name(req), _name(req).replace("-", "_"))
                      for extra, reqs in _extras().items() if extra != "dev" for req in reqs})
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules))
    env = quiet_env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q",
                           "-rs", "-m", "extras and not slow", "--basetemp", str(tmp_path / "t"), "tests"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    skips = [ln for ln in out.splitlines() if ln.startswith("SKIPPED")]
    assert skips and all("pip install" in ln for ln in skips), "\n".join(skips)  # each names the extra to install
    for extra in ("kerasclf[export]", "[audit]", ".[jax]"):
        assert any(extra in ln for ln in skips), (extra, skips)  # the hiding worked for every extra
    assert re.search(r"\b\d+ passed", out), out[-2000:]  # the rest ran, without the extras
    noise = [ln for ln in out.splitlines() if "cudart_stub" in ln or "oneDNN custom operations" in ln]
    assert not noise, noise  # pytest's own start (conftest) imports TensorFlow quietly too
