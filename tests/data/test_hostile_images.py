"""Images cannot exhaust memory: decompression bombs (PNG and GIF declaring 40,000 x 40,000, and a
complete 12,000 x 12,000 PNG of 420 KB that TensorFlow's decoder would decode), a GIF with 2,000 frames and a 1x1 image are each a listed skip in `check`, training, `predict` and
`analyze`, before any decoder (PIL's or TensorFlow's) sees their pixels; peak memory is measured."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kerasclf.data.pipeline import make_dataset, prevalidate
from kerasclf.data.reader import ImageReadError, probe_image, read_image
from kerasclf.data.spec import DataSpec
from kerasclf.io import save_model
from kerasclf.testing import run_python, tiny_cnn

HOSTILE = {"bomb.png": "too large", "bomb12k.png": "too large (12000x12000", "bomb.gif": "too large", "many.gif": "2,000 frames",
           "one.png": "too small (1x1"}
FRAMES, SIDE = 2000, 256  # what TF's GIF decoder would hold at once: 2000 x 256 x 256 x 3 = 393 MB


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, side: int = 40_000, rows: int = 64) -> None:
    """A PNG declaring ``side`` x ``side`` whose first ``rows`` rows are compressed zeros.

    40,000 with 64 rows: 7.5 KB declaring 4.8 GB. 12,000 with every row: 420 KB that
    ``tf.io.decode_image`` decodes in full (+410 MB), then the pipeline's resize would hold it as
    float32 (1.7 GB): the bomb TF's own decoder does not refuse.
    """
    co, line, parts = zlib.compressobj(9), b"\x00" * (side * 3 + 1), []
    for start in range(0, rows, 500):
        parts.append(co.compress(line * min(500, rows - start)))
    data = b"".join(parts) + co.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))


def bomb_gif(path: Path, side: int = 40_000) -> None:
    """An 8x8 GIF whose screen and frame descriptors are rewritten to declare side x side."""
    im = Image.new("P", (8, 8))
    im.putpalette([0, 0, 0] * 256)
    im.save(path)
    b = bytearray(path.read_bytes())
    b[6:10] = struct.pack("<HH", side, side)
    i = b.index(b"\x2c")  # image descriptor
    b[i + 5:i + 9] = struct.pack("<HH", side, side)
    path.write_bytes(bytes(b))


def many_frames_gif(path: Path, frames: int = FRAMES, side: int = SIDE) -> None:
    """77 KB on disk: each frame differs from the last by one pixel, so only that pixel is stored."""
    pal = list(range(256)) * 3
    ims = []
    for k in range(frames):
        a = np.zeros((side, side), np.uint8)
        a[(k // side) % side, k % side] = 1 + k % 200
        im = Image.fromarray(a, "P")
        im.putpalette(pal)
        ims.append(im)
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=20, loop=0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """``good/`` (a, b: 3 PNGs each) and ``hostile/`` (the same plus the four hostile files)."""
    root = tmp_path_factory.mktemp("hostile_images")
    rng = np.random.default_rng(0)
    for top in ("good", "hostile"):
        for c in ("a", "b"):
            (root / top / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / top / c / f"{i}.png")
    h = root / "hostile"
    bomb_png(h / "a" / "bomb.png")
    bomb_png(h / "a" / "bomb12k.png", side=12_000, rows=12_000)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(h / "a" / "one.png")
    bomb_gif(h / "b" / "bomb.gif")
    many_frames_gif(h / "b" / "many.gif")
    return root / "good", h


def _skips(pairs) -> dict[str, str]:
    return {Path(p).name: why for p, why in pairs}


def test_header_guards_refuse_each_file_in_one_line(folders):
    _, hostile = folders
    for path in hostile.rglob("*"):
        if path.name in HOSTILE:
            for reader in (probe_image, read_image):
                with pytest.raises(ImageReadError, match=HOSTILE[path.name].replace("(", r"\(")) as err:
                    reader(path)
                assert "\n" not in str(err.value) and str(path) in str(err.value)
    flags, skipped = prevalidate(sorted(str(p) for p in hostile.rglob("*.*")))
    assert (flags >= 0).sum() == 6 and set(_skips(skipped)) == set(HOSTILE)


def test_an_animation_under_the_frame_limit_is_read_as_its_first_frame(tmp_path):
    """TF's GIF decoder holds every frame even with expand_animations=False: animations go to PIL."""
    many_frames_gif(tmp_path / "short.gif", frames=5, side=16)
    flags, skipped = prevalidate([str(tmp_path / "short.gif")])
    assert flags.tolist() == [0] and not skipped  # 0: the PIL reader, not tf.io.decode_image
    spec = DataSpec(class_names=["_"], labels=np.array([0]), paths=[str(tmp_path / "short.gif")])
    (x, _), = list(make_dataset(spec, image_size=(16, 16), batch_size=2))
    assert x.shape == (1, 16, 16, 3) and not spec.skipped
    np.testing.assert_array_equal(np.asarray(x[0], "uint8"), read_image(tmp_path / "short.gif"))


_SCRIPT = r"""
import json, resource, sys
from pathlib import Path
from kerasclf.data.checks import check_dataset
from kerasclf.data.pipeline import make_dataset
from kerasclf.data.sources import from_folder
from kerasclf.evaluate import analyze_run
from kerasclf.predict import predict_paths

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

def everything(folder, out):
    report = check_dataset(folder, min_per_class=1)
    spec = from_folder(folder)
    n = sum(int(x.shape[0]) for x, _ in make_dataset(spec, image_size=(16, 16), batch_size=4))
    rows = predict_paths(sys.argv[2], [folder])
    result = analyze_run(sys.argv[2], folder, out_dir=out, explain_methods=(), max_gallery=2)
    return {"check": [[Path(p).name, r] for p, r in report.bad_files], "train_images": n,
            "train": [[Path(p).name, r] for p, r in spec.skipped],
            "predict": [[Path(r["path"]).name, r["error"]] for r in rows if r["error"]],
            "analyze": [[Path(p).name, r] for p, r in result["skipped"]]}

good, hostile, out = map(Path, (sys.argv[1] + "/good", sys.argv[1] + "/hostile", sys.argv[3]))
everything(good, out / "good")  # warm-up: every code path, on plain files
base = peak_mb()
got = everything(hostile, out / "hostile")
print(json.dumps({"base_mb": base, "peak_mb": peak_mb(), **got}))
"""


@pytest.mark.slow  # over 30 s in the 3-worker suite on 2 cores; `pytest -m slow` runs it
def test_every_command_skips_hostile_images_with_bounded_memory(folders, tmp_path):
    good, hostile = folders
    model = tmp_path / "m.keras"
    save_model(tiny_cnn(2, (16, 16, 3), task="multiclass"), model,
               meta={"class_names": ["a", "b"], "task": "multiclass", "image_size": [16, 16]})
    before = {p: p.read_bytes() for p in good.parent.rglob("*") if p.is_file()}
    proc = run_python(_SCRIPT, str(good.parent), str(model), str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = got["peak_mb"] - got["base_mb"]
    print(f"\npeak RSS {got['base_mb']:.0f} MB over the plain files, then +{extra:.0f} MB over the hostile ones")
    # TF alone decodes bomb12k.png to 410 MB (1.7 GB once resized as float32); headers cost next to nothing
    assert extra < 100, got
    for where in ("check", "train", "predict", "analyze"):
        listed = dict(got[where])
        assert set(listed) == set(HOSTILE), (where, listed)
        for name, why in listed.items():
            assert HOSTILE[name] in why and "\n" not in why, (where, name, why)
    assert got["train_images"] == 6
    assert {p: p.read_bytes() for p in good.parent.rglob("*") if p.is_file()} == before  # user's files untouched
    assert (tmp_path / "out" / "hostile" / "skipped.csv").read_text().count("\n") == 1 + len(HOSTILE)
