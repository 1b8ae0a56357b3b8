"""The report renders in a real browser: headless Chromium dumps the DOM and takes a screenshot.

Skips when no Chromium is installed (Debian: ``apt-get install -y chromium``).
"""
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from kerasclf.analysis.analyze import analyze
from kerasclf.analysis.report import SECTION_IDS

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
BROWSER = next((p for p in CANDIDATES if os.path.exists(p)), None) or shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]

pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium found at /usr/bin/chromium (install Debian's "
                                                        "`chromium` package to run the browser test of report.html)")


def _run(args, tmp_path):
    cmd = [BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, f"chromium failed ({res.returncode}): {res.stderr[-2000:]}"
    return res.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory, trained_square_model, square_data):
    model, history = trained_square_model
    xtr, ytr, xte, yte, _ = square_data
    out = tmp_path_factory.mktemp("browser")
    result = analyze(model, (xte, yte), out_dir=out / "analysis", class_names=["top_left", "bottom_right"],
                     task="multiclass", history_csv=history, val_data=(xtr[:40], ytr[:40]), max_gallery=4,
                     explain_methods=("gradcam",), embed_methods=("pca",),
                     leaderboard=[{"label": "tiny_cnn", "val_acc": 1.0}])
    return result["report"]


def test_dom_has_every_section(report, tmp_path):
    dom = _run(["--dump-dom", report.resolve().as_uri()], tmp_path)
    for sid, title in SECTION_IDS.items():
        if sid == "candidates":  # a comparison report's section (tests/test_candidates.py renders it)
            continue
        assert f'id="{sid}"' in dom, f"section {sid} not rendered"
        assert title in dom
    assert dom.count("<img") >= 7


def test_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    _run([f"--screenshot={shot}", "--window-size=1280,2000", report.resolve().as_uri()], tmp_path)
    assert shot.is_file(), "chromium wrote no screenshot"
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        pixels = np.asarray(im.convert("L"), dtype="float64")
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 200).mean() > 0.02  # text and figures, not an empty page
