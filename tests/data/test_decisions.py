"""Review decisions: the append-only log, undo, and their application at split time (relabel,
exclude, the manifest's given labels, the model card, resume and one-line errors)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from kerasclf.cli import main
from kerasclf.data import sources
from kerasclf.data.checks import check_dataset
from kerasclf.data.decisions import (COLUMNS, Decision, append_decisions, apply_decisions, current_decisions,
                                     decision_counts, manifest_decisions, read_decisions)
from kerasclf.data.splits import read_manifest, split_indices, write_manifest
from kerasclf.errors import DataError
from kerasclf.features.artifacts import data_fingerprint
from kerasclf.io import model_card
from kerasclf.testing import write_image_folder
from kerasclf.train.fit import train
from kerasclf.train.recipe import Recipe


@pytest.fixture
def folder(tmp_path):
    """class0/class1/class2, 8 images each (square_images: learnable by a tiny CNN)."""
    return write_image_folder(tmp_path / "images", n_per_class=8, size=16)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_log_is_appended_never_rewritten_and_undo_takes_back_the_last_decision(tmp_path):
    log = tmp_path / "review" / "decisions.csv"
    append_decisions(log, [{"path": "a.jpg", "action": "relabel", "new_label": "dog", "reason": "label issue"}])
    first = log.read_bytes()
    append_decisions(log, [Decision("a.jpg", "exclude"), Decision("a.jpg", "undo"), Decision("b.jpg", "keep")])
    assert log.read_bytes().startswith(first)  # appended, the earlier bytes untouched
    rows = read_decisions(log)
    assert [r.action for r in rows] == ["relabel", "exclude", "undo", "keep"]
    assert [r.row for r in rows] == [2, 3, 4, 5] and all(r.time for r in rows)
    now = current_decisions(rows)
    assert now["a.jpg"].action == "relabel" and now["a.jpg"].new_label == "dog"
    append_decisions(log, [Decision("a.jpg", "undo")])
    assert "a.jpg" not in current_decisions(read_decisions(log))  # every decision on it taken back
    assert _rows(log)[0].keys() == set(COLUMNS)


def test_the_writer_refuses_bad_rows_and_a_file_that_is_not_a_log(tmp_path):
    log = tmp_path / "decisions.csv"
    with pytest.raises(DataError, match="unknown action 'move'"):
        append_decisions(log, [{"path": "a.jpg", "action": "move"}])
    with pytest.raises(DataError, match="relabel of a.jpg gives no new_label"):
        append_decisions(log, [{"path": "a.jpg", "action": "relabel"}])
    assert not log.exists()  # nothing written for a refused batch
    other = tmp_path / "notes.csv"
    other.write_text("name,score\nx,1\n")
    with pytest.raises(DataError, match="not a decisions file"):
        append_decisions(other, [{"path": "a.jpg", "action": "keep"}])
    assert other.read_text() == "name,score\nx,1\n"
    hand = tmp_path / "hand.csv"  # edited by hand: no newline after the last row
    hand.write_text("path,action,new_label,reason,time\na.jpg,keep,,,")
    append_decisions(hand, [{"path": "b.jpg", "action": "exclude"}])
    assert [r.path for r in read_decisions(hand)] == ["a.jpg", "b.jpg"]


def test_decisions_relabel_and_exclude_and_the_manifest_keeps_the_given_label(tmp_path, folder):
    spec = sources.from_folder(folder)
    moved, dropped, kept = spec.paths[0], spec.paths[9], spec.paths[17]
    log = tmp_path / "decisions.csv"
    append_decisions(log, [{"path": moved, "action": "relabel", "new_label": "class2"},
                           {"path": dropped, "action": "exclude", "reason": "ood"},
                           {"path": kept, "action": "relabel", "new_label": "class0"},
                           {"path": kept, "action": "undo"}])
    used = apply_decisions(spec, log)
    assert len(used) == len(spec) - 1 and dropped not in used.paths
    i = used.paths.index(moved)
    assert used.class_names[used.labels[i]] == "class2" and used.given_labels[i] == 0
    assert used.labels[used.paths.index(kept)] == spec.labels[17]  # undone: as given
    assert used.excluded == [(dropped, "class1")]
    assert decision_counts(used) == {"relabelled": 1, "excluded": 1}
    parts = split_indices(used, (0.5, 0.25, 0.25), seed=0)
    manifest = write_manifest(tmp_path / "split.csv", used, parts)
    rows = {r["id"]: r for r in _rows(manifest)}
    assert rows[moved]["label"] == "class2" and rows[moved]["given_label"] == "class0"
    assert rows[dropped]["split"] == "excluded" and rows[dropped]["given_label"] == "class1"
    assert manifest_decisions(manifest) == {"relabelled": 1, "excluded": 1}
    again = read_manifest(manifest, used, same_labels=True)
    assert {k: v.tolist() for k, v in again.items()} == {k: v.tolist() for k, v in parts.items()}
    # the split of the data as given (before any decision) still reads: the excluded image is left out
    before = write_manifest(tmp_path / "before.csv", spec, split_indices(spec, (0.5, 0.25, 0.25), seed=0))
    assert sum(len(v) for v in read_manifest(before, used).values()) == len(used)
    with pytest.raises(DataError, match="labelled 'class2' and is 'class0' now"):
        read_manifest(manifest, spec.subset(np.array([i for i in range(len(spec)) if i != 9])), same_labels=True)


def test_relabelled_data_keeps_its_feature_cache_key(tmp_path, folder):
    spec = sources.from_folder(folder)
    log = tmp_path / "d.csv"
    append_decisions(log, [{"path": spec.paths[0], "action": "relabel", "new_label": "class1"}])
    first = apply_decisions(spec, log)
    assert data_fingerprint(first) == data_fingerprint(spec)
    second_log = tmp_path / "d2.csv"  # a second file on top: given labels stay the source's
    append_decisions(second_log, [{"path": spec.paths[1], "action": "relabel", "new_label": "class2"}])
    both = apply_decisions(spec, [log, second_log])
    assert both.given_labels.tolist() == spec.labels.tolist() and decision_counts(both)["relabelled"] == 2
    assert data_fingerprint(both) == data_fingerprint(spec)


def test_a_path_not_in_the_data_or_an_unknown_class_is_a_one_line_error_naming_file_and_row(tmp_path, folder):
    spec = sources.from_folder(folder)
    log = tmp_path / "d.csv"
    append_decisions(log, [{"path": spec.paths[0], "action": "keep"},
                           {"path": str(tmp_path / "elsewhere" / "x.jpg"), "action": "exclude"}])
    with pytest.raises(DataError, match=r"d.csv row 3: .*x.jpg is not in the data") as err:
        apply_decisions(spec, log)
    assert "\n" not in str(err.value)
    typo = tmp_path / "typo.csv"
    append_decisions(typo, [{"path": spec.paths[0], "action": "relabel", "new_label": "clas1"}])
    with pytest.raises(DataError, match=r"typo.csv row 2: unknown class 'clas1' .*class0, class1, class2"):
        apply_decisions(spec, typo)
    # the CLI prints it on one line and exits 2, before reading any image
    assert main(["check", str(folder), "--decisions", str(typo)]) == 2


def test_a_moved_folder_still_matches_its_decisions(tmp_path, folder):
    spec = sources.from_folder(folder)
    log = tmp_path / "d.csv"
    append_decisions(log, [{"path": "/old/place/images/class0/" + spec.paths[0].rsplit("/", 1)[1],
                            "action": "exclude"}])
    assert len(apply_decisions(spec, log)) == len(spec) - 1


def test_check_judges_conflicts_on_the_decided_labels(tmp_path, folder):
    spec = sources.from_folder(folder)
    src = spec.paths[0]
    copy = folder / "class1" / "copy_of_first.png"
    copy.write_bytes(open(src, "rb").read())
    assert len(check_dataset(folder).label_conflicts) == 1
    log = tmp_path / "d.csv"
    append_decisions(log, [{"path": str(copy), "action": "relabel", "new_label": "class0"}])
    assert check_dataset(folder, decisions=log).label_conflicts == []
    append_decisions(log, [{"path": str(copy), "action": "exclude"}])
    report = check_dataset(folder, decisions=log)
    assert report.n_files == len(spec) and report.exact_duplicates == []


def test_a_run_applies_its_decisions_records_them_and_refuses_to_resume_on_other_labels(tmp_path, folder):
    spec = sources.from_folder(folder)
    log = tmp_path / "review" / "decisions.csv"
    append_decisions(log, [{"path": spec.paths[1], "action": "relabel", "new_label": "class1"},
                           {"path": spec.paths[2], "action": "relabel", "new_label": "class2"},
                           {"path": spec.paths[20], "action": "exclude"}])
    before = {p: open(p, "rb").read() for p in spec.paths}
    recipe = Recipe.from_dict({
        "name": "decided", "output_dir": str(tmp_path / "runs"),
        "data": {"source": "folder", "path": str(folder), "image_size": [24, 24], "batch_size": 8,
                 "decisions": str(log), "split": {"seed": 0}},
        "model": {"name": "simple_cnn"}, "train": {"epochs": 1, "verbose": 0, "ood": False}})
    result = train(recipe)
    rows = _rows(result.run_dir / "split.csv")
    assert sum(r["split"] == "excluded" for r in rows) == 1 and len(rows) == len(spec)
    assert sum(r["label"] != r["given_label"] for r in rows) == 2
    card = json.loads((result.run_dir / "model.card.json").read_text())
    assert card["data"]["decisions"] == {"relabelled": 2, "excluded": 1}
    assert "2 labels changed, 1 images excluded" in (result.run_dir / "model.card.md").read_text()
    assert model_card(result.model_path)["data"]["decisions"]["relabelled"] == 2
    assert {p: open(p, "rb").read() for p in spec.paths} == before  # the user's files untouched
    append_decisions(log, [{"path": spec.paths[3], "action": "relabel", "new_label": "class2"}])
    with pytest.raises(DataError, match="was labelled 'class0' and is 'class2' now"):
        train(recipe, resume=True)


def test_train_and_compare_take_decisions_and_name_the_bad_row(tmp_path, capsys):
    log = tmp_path / "d.csv"  # the digits are in-memory images: their ids are "#<index>"
    append_decisions(log, [{"path": "#3", "action": "relabel", "new_label": "7"},
                           {"path": "#99999", "action": "exclude"}])
    assert main(["train", "demo", "--decisions", str(log), "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "d.csv row 3: #99999 is not in the data" in err
    assert not (tmp_path / "runs").exists()  # refused before a run folder is made
    assert main(["compare", "compare_digits", "--decisions", str(log), "--output-dir", str(tmp_path / "cmp")]) == 2
    assert "d.csv row 3" in capsys.readouterr().err
