"""The HTML report: one self-contained file, every section, embedded images, escaped strings."""
import base64
import re
from types import SimpleNamespace

import pytest

from kerasclf.analysis.plots import plot_confusion
from kerasclf.analysis.report import SECTION_IDS, Section, Table, comparison_report, gap_sentence, write_report
from kerasclf.errors import DataError


def _no_fetches(text: str) -> None:
    assert not re.search(r"""(src|href|url)\s*[=(]\s*['"]?\s*(https?:)?//""", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()


def test_report_sections_images_escaping(tmp_path):
    png = plot_confusion([0, 1, 1], [0, 1, 0], ["a", "b"], tmp_path / "cm.png")
    sections = [Section(title, id=sid, text=f"about {sid}", images=[(png, "cm")]) for sid, title in SECTION_IDS.items()]
    sections[0].table = Table(["label", "val_acc"], [{"label": "<script>alert(1)</script>", "val_acc": 0.5}],
                              highlight=0)
    out = write_report(tmp_path / "r" / "report.html", title="A & B <run>", sections=sections)
    text = out.read_text()
    for sid, title in SECTION_IDS.items():
        assert f"id='{sid}'" in text and f"<h2>{title}</h2>" in text
    assert text.count("data:image/png;base64,") == len(SECTION_IDS)
    assert "A &amp; B &lt;run&gt;" in text and "&lt;script&gt;alert(1)" in text
    _no_fetches(text)


def test_report_rejects_duplicate_ids_and_missing_images(tmp_path):
    with pytest.raises(DataError, match="share"):
        write_report(tmp_path / "r.html", title="x", sections=[Section("A", id="a"), Section("B", id="a")])
    with pytest.raises(DataError, match="not found"):
        write_report(tmp_path / "r.html", title="x", sections=[Section("A", images=[tmp_path / "none.png"])])


def test_gap_sentence_flags_large_gap():
    assert gap_sentence(0.95, 0.85).startswith("Warning")
    assert "10.0 points below" in gap_sentence(0.95, 0.85)
    assert not gap_sentence(0.90, 0.88).startswith("Warning")


def test_comparison_report(tmp_path):
    run = tmp_path / "runs" / "cnn"
    run.mkdir(parents=True)
    plot_confusion([0, 1, 1], [0, 1, 0], ["a", "b"], run / "confusion.png")
    rows = [{"label": "cnn", "mode": "scratch", "train_acc": 0.99, "val_acc": 0.97, "val_loss": 0.1,
             "params": 12345, "train_time_s": 3.2, "images_per_s": 812.0, "run_dir": str(run)},
            {"label": "logreg<b>", "mode": "features", "train_acc": 0.9, "val_acc": 0.8, "val_loss": None,
             "params": 99, "train_time_s": 1.0, "images_per_s": 4000.0, "run_dir": str(tmp_path / "x")}]
    board = SimpleNamespace(out_dir=tmp_path, rows=rows, best="cnn",
                            test={"model": "cnn", "accuracy": 0.85, "val_acc": 0.97, "n": 40,
                                  "per_class": {"a": {"precision": 1.0, "recall": 0.8, "f1": 0.9, "support": 20}}},
                            gains={"tta": {"model": "cnn", "val_acc": 0.97, "val_acc_tta": 0.975, "gain": 0.005}})
    text = comparison_report(board, tmp_path / "report.html").read_text()
    for sid in ("leaderboard", "gains", "confusion", "test"):
        assert f"id='{sid}'" in text
    assert "logreg&lt;b&gt;" in text and "Warning: test accuracy" in text and "class='best'" in text
    _no_fetches(text)
    # the best run's own confusion figure is embedded byte for byte; it has no curves.png, so that
    # section is left out rather than pointing at a missing file
    assert base64.b64encode((run / "confusion.png").read_bytes()).decode("ascii") in text
    assert text.count("data:image/png;base64,") == 1 and "id='curves'" not in text
    # the highlighted leaderboard row is the best model's, and the test paragraph states its numbers
    best_row = re.search(r"<tr class='best'>(.*?)</tr>", text).group(1)
    assert re.findall(r"<td>(.*?)</td>", best_row)[:2] == ["cnn", "scratch"]
    assert "accuracy 0.8500 on 40 images" in text
