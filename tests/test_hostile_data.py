"""Hostile data: a CSV pointing outside its folder is read only when allowed, and class names carrying
``..``, ``/``, 300 characters or case twins never make kerasclf write outside the output folder."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerasclf.analysis.analyze import analyze
from kerasclf.data import sources
from kerasclf.data.pipeline import split_arrays
from kerasclf.errors import DataError
from kerasclf.features.cluster import montages
from kerasclf.io import load_model
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe

HOSTILE_NAMES = ["../../escape", "/tmp/abs_class", "a/b", "..", "x" * 300, "Cat", "cat"]


def _tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file under ``root`` (outside ``skip``) with its sha256."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        if skip is not None and Path(dirpath).resolve().is_relative_to(skip.resolve()):
            continue
        for f in files:
            p = Path(dirpath) / f
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)


def test_csv_paths_outside_the_data_folder_are_read_only_when_allowed(tmp_path):
    data, secret = tmp_path / "data", tmp_path / "secret" / "private.png"
    for i in range(4):
        _image(data / f"{i}.png", i)
    _image(secret, 99)
    rows = ["path,label"] + [f"{i}.png,{'ab'[i % 2]}" for i in range(4)]
    rows += ["../secret/private.png,a", f"{secret},b", "sub/../../secret/private.png,a"]
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    spec = sources.from_csv(data / "labels.csv")
    assert len(spec) == 4 and all(Path(p).parent == data for p in spec.paths)
    outside = [why for _, why in spec.skipped]
    assert len(outside) == 3 and all("outside the data folder" in w and "\n" not in w for w in outside)
    allowed = sources.load({"source": "csv", "csv_path": str(data / "labels.csv"), "allow_outside": True})
    assert len(allowed) == 7 and str(secret) in allowed.paths
    (data / "only_outside.csv").write_text(f"path,label\n{secret},a\n../secret/private.png,b\n")
    with pytest.raises(DataError, match="outside .*allow_outside=True"):
        sources.from_csv(data / "only_outside.csv")


def test_hostile_class_names_never_write_outside_the_output_folder(tmp_path):
    data = tmp_path / "data"
    rows = ["path,label"]
    for i in range(4 * len(HOSTILE_NAMES)):
        _image(data / f"{i}.png", i)
        rows.append(f"{i}.png,\"{HOSTILE_NAMES[i % len(HOSTILE_NAMES)]}\"")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    before = _tree(tmp_path)
    recipe = Recipe.from_dict({
        "name": "hostile", "output_dir": str(out / "runs"),
        "data": {"source": "csv", "path": str(data / "labels.csv"), "image_size": [32, 32], "batch_size": 8,
                 "split": {"seed": 0}},
        "model": {"name": "simple_cnn"}, "train": {"epochs": 1, "verbose": 0},
    })
    result = train(recipe)
    assert sorted(load_model(result.model_path).class_names) == sorted(HOSTILE_NAMES)
    spec = sources.from_csv(data / "labels.csv")
    loaded = load_model(result.model_path)
    x, y = split_arrays(spec, image_size=(32, 32))
    analyze(loaded.model, (x, y), out_dir=out / "analysis", class_names=loaded.class_names, task=loaded.task,
            explain_methods=("gradcam",), embed_methods=("pca",), max_gallery=3)  # t-SNE: seconds, same names
    montages(spec, np.arange(len(spec)) % len(HOSTILE_NAMES), out / "montages", per_cluster=4,
             names=dict(enumerate(HOSTILE_NAMES)))
    assert _tree(tmp_path, skip=out) == before  # nothing written or changed outside out/
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and all(p.resolve().is_relative_to(out.resolve()) for p in written)
    assert len(list((out / "montages").iterdir())) == len(HOSTILE_NAMES)  # case twins kept apart
    assert not Path("/tmp/abs_class").exists()
