"""The review page in a real browser: headless Chromium, driven by the keyboard through chromedriver,
makes decisions the test reads back from ``decisions.csv``; a screenshot shows the grid; hostile
file and class names (``<script>``, quotes, ``../``) are shown as text and never run.

Skips when Chromium, chromedriver or selenium is missing (Debian: ``apt-get install -y chromium
chromium-driver``; selenium comes with the ``[dev]`` extra).
"""
from __future__ import annotations

import importlib.util
import io
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerasclf.data.decisions import current_decisions, read_decisions
from kerasclf.review import Review
from kerasclf.review.items import Found, ReviewItem
from kerasclf.review.page import thumbnails

BROWSER = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
                if os.path.exists(p)), None) or shutil.which("chromium")
DRIVER = next((p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)),
              None) or shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1000"]

pytestmark = [
    pytest.mark.skipif(BROWSER is None, reason="no Chromium at /usr/bin/chromium (Debian: apt-get install -y chromium)"),
    pytest.mark.skipif(DRIVER is None, reason="no chromedriver (Debian: apt-get install -y chromium-driver)"),
    pytest.mark.skipif(importlib.util.find_spec("selenium") is None, reason="selenium is not installed (the [dev] extra)"),
]

#: class names a user could have: markup, quotes, a path climbing out, an event handler
HOSTILE_CLASSES = ['<script>window.__pwned=1</script>', '"><img src=x onerror="window.__pwned=2">', "cat", "../../up"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    from selenium import webdriver  # a heavy optional dependency (the [dev] extra)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield d
    d.quit()


@pytest.fixture
def review(tmp_path) -> Review:
    """Eight real image files under hostile class folders and file names, each flagged for a reason."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    paths, given = [], []
    for k, cls in enumerate(HOSTILE_CLASSES):
        folder = data / f"class{k}"
        folder.mkdir(parents=True)
        for j, name in enumerate(["a'quote\".png", '<img src=x onerror="window.__pwned=4">.png']):
            img = np.zeros((40, 60, 3), np.uint8)
            img[..., k % 3] = 120 + 40 * j
            Image.fromarray(np.clip(img + rng.integers(0, 60, img.shape), 0, 255).astype(np.uint8)).save(folder / name)
            paths.append(f"{data}/class{k}/../class{k}/{name}")  # a path with ../ in it, as a source may give
            given.append(cls)
    reasons = ["label issue", "conflict", "duplicate", "ood", "top loss"]
    items = [ReviewItem(path=p, given=given[i], suggested=HOSTILE_CLASSES[(i + 1) % 4] if i % 2 == 0 else "",
                        score=0.9 if i % 2 == 0 else None, reasons=[reasons[i % 5]], notes=[f"note {Path(p).name}"])
             for i, p in enumerate(paths)]
    found = Found(items, list(HOSTILE_CLASSES), [str(data)], ["test"])
    return Review(folder=tmp_path / "review", found=found, thumbs=thumbnails([it.path for it in items]),
                  title="review of <script>window.__pwned=3</script>")


def _wait(driver, script: str, timeout: float = 15.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if driver.execute_script(script):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def _keys(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for k in keys:  # one key at a time, each decision saved before the next (as a person types)
        ActionChains(driver).send_keys(k).perform()
        _wait(driver, "return (document.body.dataset.pending || '0') === '0'")


@contextmanager
def _served(driver, review: Review) -> Iterator:
    """The review's server on a background thread, the page loaded and ready; stopped afterwards."""
    server = review.server()
    thread = server.start()
    try:
        driver.get(server.url)
        _wait(driver, "return document.body.dataset.ready === '1'")
        yield thread
    finally:
        if thread.is_alive():
            server.stop()
            thread.join(10)


def test_keyboard_decisions_land_in_decisions_csv_and_the_grid_renders(driver, review):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with _served(driver, review) as thread:
        tiles = driver.find_elements(By.CSS_SELECTOR, "#grid .tile")
        assert len(tiles) == 8 and len(driver.find_elements(By.CSS_SELECTOR, "#grid .tile img")) == 8
        assert driver.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0)")
        assert driver.find_element(By.ID, "counter").text.startswith("8 of 8 left")
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        pixels = np.asarray(shot, dtype="float64")
        assert pixels.std() > 20  # not a blank page
        top = tiles[0].rect  # the first thumbnail's pixels are the image's colours, not the background
        box = pixels[int(top["y"]) + 10:int(top["y"]) + 150, int(top["x"]) + 10:int(top["x"] + top["width"]) - 10]
        assert box.std() > 10 and (np.abs(box - 255).sum(-1) > 60).mean() > 0.3
        items = review.found.items
        # 2: relabel to the second class; x: exclude; arrows: skip one, come back; k: keep; s: suggestion;
        # u: undo the suggestion; 4: relabel to the fourth class
        _keys(driver, "2", "x", Keys.ARROW_RIGHT, Keys.ARROW_LEFT, "k", Keys.ARROW_RIGHT, "s", "u", "4")
        assert driver.find_element(By.ID, "counter").text.startswith("4 of 8 left")
        now = current_decisions(read_decisions(review.decisions_path))
        rows = read_decisions(review.decisions_path)
        assert [r.action for r in rows] == ["relabel", "exclude", "keep", "relabel", "undo", "relabel"]
        assert now[items[0].path].new_label == HOSTILE_CLASSES[1] and now[items[0].path].reason == "label issue"
        assert now[items[1].path].action == "exclude"
        assert now[items[2].path].action == "keep"
        assert now[items[4].path].new_label == HOSTILE_CLASSES[3]  # the suggestion taken back, then class 4
        assert set(now) == {items[i].path for i in (0, 1, 2, 4)}
        # a reload (a re-review) shows every decision made so far
        driver.refresh()
        _wait(driver, "return document.body.dataset.ready === '1'")
        states = driver.execute_script("return [...document.querySelectorAll('#grid .tile')].map(t => t.dataset.state || '')")
        assert states[:5] == ["relabel", "exclude", "keep", "", "relabel"]
        # the reason filter narrows the grid; h hides what is decided
        _keys(driver, "r")  # first reason: label issue
        assert len(driver.find_elements(By.CSS_SELECTOR, "#grid .tile")) == 2
        _keys(driver, "r", "r", "r", "r", "r", "h")  # back to all reasons, decided hidden
        assert len(driver.find_elements(By.CSS_SELECTOR, "#grid .tile")) <= 5
        _keys(driver, "q")  # finish: the server stops
        thread.join(10)
        assert not thread.is_alive()


def test_hostile_names_are_text_and_never_run(driver, review):
    from selenium.webdriver.common.by import By

    with _served(driver, review):
        assert driver.execute_script("return window.__pwned === undefined")
        assert driver.execute_script("return document.scripts.length") == 2  # the data block and the page's own
        assert len(driver.find_elements(By.CSS_SELECTOR, "#grid img")) == 8  # thumbnails only: no markup from a name
        text = driver.find_element(By.ID, "grid").text
        assert '<img src=x onerror="window.__pwned=4">.png' in text and "a'quote\".png" in text
        assert HOSTILE_CLASSES[0] in text and HOSTILE_CLASSES[1] in text and "../../up" in text
        assert driver.title == "review of <script>window.__pwned=3</script>"
        options = driver.execute_script("return [...document.querySelectorAll('#klass option')].map(o => o.value)")
        assert options == ["", *HOSTILE_CLASSES]
        _keys(driver, "2")  # relabel to the class named '"><img src=x onerror=...>'
        assert current_decisions(read_decisions(review.decisions_path))[review.found.items[0].path].new_label == \
            HOSTILE_CLASSES[1]
        assert driver.execute_script("return window.__pwned === undefined")
    assert sorted(p.name for p in review.folder.iterdir()) == ["decisions.csv"]  # nothing outside the review


def test_the_page_opened_as_a_file_works_offline_and_keeps_decisions_in_memory(driver, review):
    from selenium.webdriver.common.by import By

    page = review.write_page()
    driver.get(page.resolve().as_uri())
    _wait(driver, "return document.body.dataset.ready === '1'")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#grid .tile img")) == 8
    _keys(driver, "x", "x")
    assert driver.find_element(By.ID, "counter").text.startswith("6 of 8 left")
    assert driver.find_element(By.ID, "download").is_displayed()
    assert not review.decisions_path.exists()  # no server: nothing written until downloaded
