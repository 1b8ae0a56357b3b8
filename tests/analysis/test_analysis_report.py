"""The HTML report: one self-contained file, every section, embedded images, escaped strings."""
import re
from types import SimpleNamespace

import pytest

from kerasclf.analysis.comparison import comparison_report
from kerasclf.analysis.plots import plot_confusion, plot_histories
from kerasclf.analysis.report import SECTION_IDS, Section, Table, gap_sentence, write_report
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
    rows = [{"label": "cnn", "mode": "scratch", "train_acc": 0.99, "val_acc": 0.97, "val_loss": 0.1,
             "params": 12345, "train_time_s": 3.2, "images_per_s": 812.0, "run_dir": str(tmp_path / "cnn")},
            {"label": "logreg<b>", "mode": "sklearn", "train_acc": 0.9, "val_acc": 0.8, "val_loss": 0.5,
             "params": 99, "train_time_s": 1.0, "images_per_s": 4000.0, "run_dir": str(tmp_path / "x")}]
    cands = [{"configuration": "ensemble(cnn,logreg<b>)", "kind": "ensemble", "members": ["cnn", "logreg<b>"],
              "tta": False, "val_acc": 0.975, "val_loss": 0.09, "gain": 0.005},
             {"configuration": "cnn", "kind": "single", "members": ["cnn"], "tta": False, "val_acc": 0.97,
              "val_loss": 0.1, "gain": 0.0}]
    board = SimpleNamespace(out_dir=tmp_path, rows=rows, best="cnn", chosen=cands[0]["configuration"], candidates=cands,
                            test={"configuration": cands[0]["configuration"], "kind": "ensemble", "accuracy": 0.85,
                                  "val_acc": 0.975, "n": 40, "macro": {"f1": 0.84}},
                            saved={"note": "an ensemble with scikit-learn head(s) (logreg<b>): it cannot be one "
                                           "Keras model", "test_max_abs_diff": None})
    text = comparison_report(board, tmp_path / "report.html").read_text()
    for sid in ("leaderboard", "candidates", "test"):
        assert f"id='{sid}'" in text
    assert "logreg&lt;b&gt;" in text and "Warning: test accuracy" in text and "cannot be one Keras model" in text
    _no_fetches(text)
    # the leaderboard highlights the best single model, the candidates table the chosen configuration
    marked = [re.findall(r"<td>(.*?)</td>", row)[:2] for row in re.findall(r"<tr class='best'>(.*?)</tr>", text)]
    assert marked == [["cnn", "scratch"], ["ensemble(cnn,logreg&lt;b&gt;)", "ensemble"]]
    assert "+0.0050 over cnn" in text and "accuracy 0.8500 on 40 images" in text
    assert "data:image/png;base64," not in text  # no evidence given: no figure sections


def test_plot_histories_one_colour_per_model_on_shared_axes(tmp_path):
    hs = {"a": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]},
          "b": {"loss": [0.9, 0.4, 0.3], "val_loss": [1.0, 0.8, 0.9]}}
    path, fig = plot_histories(hs, tmp_path / "c.png", return_figure=True)
    loss_ax, acc_ax = fig.axes
    lines = {ln.get_label(): ln for ln in loss_ax.get_lines()}
    assert sorted(lines) == ["a (train)", "a (val)", "b (train)", "b (val)"]
    assert list(lines["b (val)"].get_ydata()) == [1.0, 0.8, 0.9] and lines["b (val)"].get_linestyle() == "-"
    assert lines["a (val)"].get_color() == lines["a (train)"].get_color() != lines["b (val)"].get_color()
    assert [ln.get_label() for ln in acc_ax.get_lines()] == ["a (val)", "a (train)"]
    with pytest.raises(DataError, match="no model history"):
        plot_histories({"a": {"auc": [0.5]}}, tmp_path / "d.png")
