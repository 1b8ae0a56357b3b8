"""Sources: folder, flat names, pre-split, CSV, CelebA, TFDS, keras.datasets, arrays, load()."""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import keras.src.backend.config as kcfg
import numpy as np
import pytest
from PIL import Image

from kerasclf.data import sources
from kerasclf.data.reader import ImageReadError, inspect_image, read_image
from kerasclf.errors import ConfigError, DataError, UnknownNameError


# ---------------------------------------------------------------- reader
def test_reader_converts_every_mode(hostile_folder, image_folder):
    for p in sorted(image_folder.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(image_folder).parts):
            arr = read_image(p)
            assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, p
    assert inspect_image(hostile_folder / "b" / "cmyk.jpg").converted_from == "CMYK"
    g16 = read_image(hostile_folder / "b" / "gray16.png")
    assert g16.shape == (9, 9, 3) and abs(int(g16[0, 0, 0]) - 40000 // 257) <= 1
    assert inspect_image(image_folder / "cat" / "cat_003.png").converted_from == "RGBA"


@pytest.mark.parametrize("name,reason", [("a/truncated.jpg", "truncated"), ("a/zero.jpg", "zero-byte"),
                                         ("b/notes.jpg", "not an image")])
def test_reader_errors_are_one_line(hostile_folder, name, reason):
    with pytest.raises(ImageReadError) as e:
        read_image(hostile_folder / name)
    msg = str(e.value)
    assert reason in msg and name.split("/")[1] in msg and "\n" not in msg
    info = inspect_image(hostile_folder / name)
    assert not info.ok and reason in info.reason


def test_reader_max_pixels(tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(p)
    with pytest.raises(ImageReadError, match="too large"):
        read_image(p, max_pixels=10_000)
    assert read_image(p).shape == (200, 300, 3)
    info = inspect_image(p, max_pixels=10_000)
    assert not info.ok and info.width == 300


# ---------------------------------------------------------------- folder / flat
def test_from_folder_all_formats(image_folder):
    spec = sources.from_folder(image_folder)
    assert spec.class_names == ["cat", "dog", "fox"] and spec.task == "multiclass"
    assert len(spec) == 36 and np.bincount(spec.labels).tolist() == [12, 12, 12]
    exts = {Path(p).suffix for p in spec.paths}
    assert exts == {".jpg", ".png", ".bmp", ".gif"}
    assert not any("/." in p for p in spec.paths)  # hidden files and folders ignored
    assert spec.preset_split is None


def test_from_folder_binary_and_errors(make_folder, tmp_path):
    spec = sources.from_folder(make_folder({"cat": 3, "dog": 3}))
    assert spec.task == "binary"
    base = make_folder({"x": 2, "y": 2}, name="withempty")
    (base / "z").mkdir()
    with pytest.raises(DataError, match=r"z: empty class folder.*add images"):
        sources.from_folder(base)
    with pytest.raises(DataError, match="no such"):
        sources.from_folder(tmp_path / "nope")
    flat = tmp_path / "loose"
    flat.mkdir()
    Image.new("RGB", (4, 4)).save(flat / "cat.1.jpg")
    with pytest.raises(DataError, match="flat"):
        sources.from_folder(flat)


def test_symlink_loop_does_not_hang(make_folder):
    base = make_folder({"a": 3, "b": 3}, name="loopy")
    os.symlink(base, base / "a" / "loop")
    spec = sources.from_folder(base)
    assert len(spec) == 6 and any("symlink" in r for _, r in spec.skipped)
    spec2 = sources.from_folder(base, follow_symlinks=True)  # followed, but the cycle is cut
    assert len(spec2) >= 6


def test_presplit_layout(presplit_folder):
    spec = sources.from_folder(presplit_folder)
    assert spec.class_names == ["cat", "dog"]
    counts = {s: int((spec.preset_split == s).sum()) for s in ("train", "val", "test")}
    assert counts == {"train": 16, "val": 4, "test": 6}


def test_from_flat(flat_folder):
    spec = sources.from_flat(flat_folder)
    assert spec.class_names == ["cat", "dog"] and len(spec) == 20
    assert [Path(p).name for p, _ in spec.skipped] == ["12345.jpg"]
    assert "pattern" in spec.skipped[0][1]
    spec2 = sources.from_flat(flat_folder, pattern=r"^(cat)\.")
    assert spec2.class_names == ["cat"]
    with pytest.raises(DataError, match=r"zebra"):
        sources.from_flat(flat_folder, pattern=r"^(zebra)\.")


# ---------------------------------------------------------------- csv / celeba
def test_from_csv_single_and_multilabel(image_folder, tmp_path):
    spec = sources.from_folder(image_folder)
    rows = ["path,label,group"] + [f"{os.path.relpath(p, image_folder)},{spec.class_names[y]},g{i // 2}"
                                    for i, (p, y) in enumerate(zip(spec.paths, spec.labels))]
    rows.append("missing/file.jpg,cat,g99")
    (image_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    c = sources.from_csv(image_folder / "labels.csv")
    assert c.class_names == spec.class_names and len(c) == 36 and c.groups is not None
    assert np.array_equal(c.labels, spec.labels) and len(c.skipped) == 1
    with pytest.raises(DataError, match="no column 'klass'"):
        sources.from_csv(image_folder / "labels.csv", label_column="klass")
    # multi-label, two ways
    p0, p1 = spec.paths[:2]
    (tmp_path / "ml.csv").write_text(f"path,labels\n{p0},cat|outdoor\n{p1},outdoor\n")
    m = sources.from_csv(tmp_path / "ml.csv", multilabel=True, label_column="labels", allow_outside=True)
    assert m.task == "multilabel" and m.class_names == ["cat", "outdoor"]
    assert m.labels.tolist() == [[1, 1], [0, 1]]
    (tmp_path / "ml2.csv").write_text(f"path,Smiling,Male\n{p0},1,-1\n{p1},-1,1\n")
    m2 = sources.from_csv_multilabel(tmp_path / "ml2.csv", allow_outside=True)  # absolute paths elsewhere
    assert m2.class_names == ["Smiling", "Male"] and m2.labels.tolist() == [[1, 0], [0, 1]]


def _celeba_fixture(tmp_path):
    imgs = tmp_path / "img_align_celeba"
    imgs.mkdir()
    for i in (1, 2, 4):
        Image.new("RGB", (8, 10), (i * 40, 0, 0)).save(imgs / f"{i:06d}.jpg")
    names = list(sources.CELEBA_ATTRIBUTES)
    lines = ["202599", " ".join(names)]
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        vals = rng.choice([-1, 1], len(names))
        lines.append(f"{i:06d}.jpg " + " ".join(f"{v:2d}" for v in vals))
    attr = tmp_path / "list_attr_celeba.txt"
    attr.write_text("\n".join(lines) + "\n")
    return attr, imgs, lines


def test_from_celeba(tmp_path):
    attr, imgs, lines = _celeba_fixture(tmp_path)
    spec = sources.from_celeba(attr, imgs)
    assert spec.task == "multilabel" and spec.labels.shape == (3, 40)  # only images that exist
    row4 = [int(v) for v in lines[2 + 3].split()[1:]]
    assert spec.labels[2].tolist() == [1 if v > 0 else 0 for v in row4]
    s32 = sources.from_celeba(attr, imgs, attributes="seed32")
    assert s32.class_names == list(sources.CELEBA_SEED_32) and len(sources.CELEBA_SEED_32) == 32
    s2 = sources.from_celeba(attr, imgs, attributes=["Smiling", "Male"])
    assert s2.labels.shape == (3, 2)
    assert sources.from_celeba(attr, imgs, attributes=5).labels.shape == (3, 5)
    with pytest.raises(UnknownNameError, match="Smilin"):
        sources.from_celeba(attr, imgs, attributes=["Smilin"])


@pytest.mark.assets
def test_celeba_real_assets(assets):
    attr = assets / "celeba" / "list_attr_celeba.txt"
    if not attr.is_file():
        pytest.skip(f"CelebA assets not found at {attr} (set KERASCLF_ASSETS)")
    spec = sources.from_celeba(attr, assets / "celeba" / "img_align_celeba", attributes="seed32")
    assert len(spec) == 558 and spec.labels.shape == (558, 32)
    assert set(np.unique(spec.labels)) <= {0, 1}
    assert read_image(spec.paths[0]).shape == (218, 178, 3)


# ---------------------------------------------------------------- tfds / keras / arrays
def test_from_tfds_mock():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        spec = sources.from_tfds("mnist", split="train")
    assert len(spec) == 12 and spec.images.shape[1:] == (28, 28, 1)
    assert spec.class_names == [str(i) for i in range(10)] and spec.task == "multiclass"
    assert spec.images.dtype == np.uint8


def _seed_keras_home(monkeypatch, home: Path) -> None:
    """Point Keras's cache at ``home`` (KERAS_HOME is read at import, so patch the module too)."""
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(kcfg, "_KERAS_DIR", str(home))


def test_from_keras_tiny_idx_files(tmp_path, monkeypatch):
    """keras.datasets.fashion_mnist.load_data's real code on tiny IDX files in a temp KERAS_HOME."""
    d = tmp_path / "kh" / "datasets" / "fashion-mnist"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        with gzip.open(d / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(b"\0" * 8 + bytes(range(n)))
        with gzip.open(d / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(b"\0" * 16 + rng.integers(0, 255, n * 28 * 28, dtype=np.uint8).tobytes())
    _seed_keras_home(monkeypatch, tmp_path / "kh")
    spec = sources.load({"source": "keras", "name": "fashion_mnist"})
    assert len(spec) == 10 and spec.images.shape[1:] == (28, 28, 1)
    assert spec.preset_split.tolist() == ["train"] * 6 + ["test"] * 4
    assert spec.class_names[9] == "Ankle boot"


def test_from_keras_fashion_mnist(tmp_path, monkeypatch):
    src = Path("/usr/share/datasets/fashion-mnist")
    if not src.is_dir():
        pytest.skip(f"{src} absent: `apt-get install dataset-fashion-mnist` provides Keras's files")
    home = tmp_path / "keras_home"
    (home / "datasets").mkdir(parents=True)
    shutil.copytree(src, home / "datasets" / "fashion-mnist")
    _seed_keras_home(monkeypatch, home)
    spec = sources.from_keras_dataset("fashion_mnist")
    assert len(spec) == 70_000 and spec.class_names[0] == "T-shirt/top"
    assert (spec.preset_split == "test").sum() == 10_000


def test_keras_unknown_name():
    with pytest.raises(UnknownNameError, match="cifar10"):
        sources.from_keras_dataset("cifar1O")


def test_digits_and_arrays(tmp_path):
    d = sources.digits()
    assert d.images.shape == (1797, 8, 8, 1) and d.images.dtype == np.uint8 and d.images.max() == 255
    a = sources.from_arrays(np.zeros((4, 5, 5, 3)), [0, 1, 1, 0], class_names=["x", "y"])
    assert a.task == "binary" and a.images.dtype == np.uint8
    np.savez(tmp_path / "d.npz", x_train=d.images[:20], y_train=d.labels[:20], x_test=d.images[20:30],
             y_test=d.labels[20:30], label_names=np.array(d.class_names))
    n = sources.load({"source": "npz", "path": str(tmp_path / "d.npz")})
    assert len(n) == 30 and (n.preset_split == "test").sum() == 10 and n.class_names == d.class_names


@pytest.mark.assets
def test_npz_real_cifar10(assets):
    f = assets / "cifar" / "cifar10_subset.npz"
    if not f.is_file():
        pytest.skip(f"{f} not found (set KERASCLF_ASSETS)")
    spec = sources.from_npz(f)
    assert spec.class_names[0] == "airplane" and spec.images.shape[1:] == (32, 32, 3)


def test_load_dispatch(flat_folder, image_folder):
    assert len(sources.load({"source": "flat", "path": str(flat_folder), "pattern": r"^([a-z]+)\."})) == 20
    assert sources.load({"source": "folder", "path": str(image_folder)}).num_classes == 3
    with pytest.raises(ConfigError, match="no option 'batch_size'"):  # a pipeline key: the recipe's DataCfg
        sources.load({"source": "folder", "path": str(image_folder), "batch_size": 4})
    with pytest.raises(UnknownNameError, match="folder"):
        sources.load({"source": "foldr"})
    with pytest.raises(ConfigError, match="'colour'"):
        sources.load({"source": "folder", "path": str(image_folder), "colour": 1})
    with pytest.raises(ConfigError, match="'path'"):
        sources.load({"source": "folder"})


@pytest.mark.assets
def test_cats_vs_dogs_real_assets(assets):
    base = assets / "cats_vs_dogs"
    if not base.is_dir():
        pytest.skip(f"{base} not found (set KERASCLF_ASSETS)")
    folder = sources.from_folder(base)
    flat = sources.from_flat(base, pattern=r"^(cat|dog)\.")
    assert folder.class_names == flat.class_names == ["cat", "dog"] and folder.task == "binary"
    assert len(folder) == len(flat) >= 4999
    assert np.array_equal(folder.labels, flat.labels)
