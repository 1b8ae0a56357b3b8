"""Fixtures that write small real image folders (JPEG, PNG, BMP, GIF, grayscale, RGBA)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ASSETS = Path(os.environ.get("KERASCLF_ASSETS") or Path(__file__).resolve().parents[2].parent / "shared" / "assets")


def _img(rng: np.random.Generator, cls: int, size: int = 12) -> np.ndarray:
    """A small image whose colour depends on the class (so it is learnable) plus noise."""
    base = np.zeros((size, size, 3), np.uint8)
    base[..., cls % 3] = 200
    return np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)


def save(arr: np.ndarray, path: Path, kind: str) -> Path:
    im = Image.fromarray(arr)
    if kind == "gray":
        im.convert("L").save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    if kind == "rgba":
        im.convert("RGBA").save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    ext = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "gif": ".gif"}[kind]
    im.save(path.with_suffix(ext))
    return path.with_suffix(ext)


KINDS = ("jpeg", "png", "gray", "rgba", "bmp", "gif")


@pytest.fixture
def make_folder(tmp_path):
    """Factory: ``make_folder(classes={"cat": 6, "dog": 6}, name="pets")`` → class-subfolder tree."""

    def make(classes: dict[str, int] | None = None, name: str = "folder", root: Path | None = None,
             seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        base = (root or tmp_path) / name
        for ci, (c, n) in enumerate(sorted((classes or {"cat": 6, "dog": 6}).items())):
            d = base / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                save(_img(rng, ci), d / f"{c}_{i:03d}", KINDS[i % len(KINDS)])
        return base

    return make


@pytest.fixture
def image_folder(make_folder) -> Path:
    """cat/dog/fox, 12 images each, every format and mode, plus a hidden file and folder."""
    base = make_folder({"cat": 12, "dog": 12, "fox": 12}, name="pets")
    (base / "cat" / ".DS_Store").write_bytes(b"junk")
    (base / ".hidden").mkdir()
    Image.new("RGB", (4, 4)).save(base / ".hidden" / "x.jpg")
    return base


@pytest.fixture
def flat_folder(tmp_path) -> Path:
    """A flat folder of ``cat.N.jpg`` / ``dog.N.jpg`` plus one file whose name has no class."""
    rng = np.random.default_rng(1)
    base = tmp_path / "flat"
    base.mkdir()
    for ci, c in enumerate(("cat", "dog")):
        for i in range(10):
            Image.fromarray(_img(rng, ci)).save(base / f"{c}.{i}.jpg")
    Image.fromarray(_img(rng, 2)).save(base / "12345.jpg")
    return base


@pytest.fixture
def presplit_folder(make_folder, tmp_path) -> Path:
    """The seed's layout: ``train/``, ``val/``, ``test/`` each with class subfolders."""
    root = tmp_path / "presplit"
    make_folder({"cat": 8, "dog": 8}, name="train", root=root, seed=1)
    make_folder({"cat": 2, "dog": 2}, name="val", root=root, seed=2)
    make_folder({"cat": 3, "dog": 3}, name="test", root=root, seed=3)
    return root


@pytest.fixture
def hostile_folder(make_folder) -> Path:
    """Class folders with good images plus a corrupt / truncated / zero-byte / fake / CMYK / 16-bit file."""
    base = make_folder({"a": 5, "b": 5}, name="hostile")
    good = (base / "a" / "a_000.jpg").read_bytes()
    (base / "a" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (base / "a" / "zero.jpg").write_bytes(b"")
    (base / "b" / "notes.jpg").write_text("not an image")
    Image.new("CMYK", (10, 10), (0, 255, 0, 0)).save(base / "b" / "cmyk.jpg")
    Image.fromarray(np.full((9, 9), 40000, np.uint16)).save(base / "b" / "gray16.png")
    return base


@pytest.fixture
def assets() -> Path:
    """The shared real-data folder (``../shared/assets`` or ``$KERASCLF_ASSETS``)."""
    return ASSETS
