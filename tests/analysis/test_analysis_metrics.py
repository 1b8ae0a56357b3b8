"""Metrics for the three tasks: values, shapes, JSON, normalised confusion matrix."""
import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from kerasclf.analysis import ood
from kerasclf.analysis.metrics import (
    auroc,
    choose_thresholds,
    classification_metrics,
    confusion_fractions,
    mean_attribute_accuracy,
    multiclass_log_loss,
    per_sample_loss,
    probs_to_pred,
)
from kerasclf.errors import DataError
from kerasclf.features import audit


def test_multiclass_values_and_confusion_rows_sum_to_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    probs[np.arange(150), y[:150]] += 2  # mostly right
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(y, probs, "multiclass", list("abcd"))
    json.dumps(m)  # JSON-serialisable
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (4, 4)
    np.testing.assert_allclose(cm.sum(axis=1), 1.0, atol=1e-6)
    assert m["accuracy"] == pytest.approx((probs.argmax(1) == y).mean())
    assert set(m["per_class"]) == set("abcd")

    assert m["macro"]["f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    assert m["loss"] == pytest.approx(-np.log(probs[np.arange(200), y]).mean(), rel=1e-6)
    assert 0 <= m["ece"] <= 1


def test_binary_accepts_column_and_two_column_probs():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.1, 0.8, 0.4, 0.6, 0.9])
    a = classification_metrics(y, p[:, None], "binary", ["neg", "pos"])
    b = classification_metrics(y.reshape(-1, 1), np.stack([1 - p, p], 1), "binary", ["neg", "pos"])
    assert a["accuracy"] == b["accuracy"] == pytest.approx(0.6)
    assert a["per_class"]["pos"]["recall"] == pytest.approx(2 / 3)
    np.testing.assert_allclose(np.array(a["confusion_matrix"]).sum(1), 1.0)
    assert classification_metrics(y, p, "binary", ["neg", "pos"], threshold=0.35)["accuracy"] == pytest.approx(0.8)


def test_multilabel_per_attribute_and_thresholds():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (300, 3))
    # attribute 2 is under-confident: positives sit around 0.3, negatives around 0.1
    p = np.clip(y * 0.7 + rng.normal(0.15, 0.08, y.shape), 0, 1)
    p[:, 2] = np.clip(y[:, 2] * 0.2 + rng.normal(0.1, 0.03, 300), 0, 1)
    thr = choose_thresholds(y, p)
    assert len(thr) == 3 and thr[2] < 0.3
    m05 = classification_metrics(y, p, "multilabel", ["smile", "hat", "glasses"])
    mt = classification_metrics(y, p, "multilabel", ["smile", "hat", "glasses"], threshold=thr)
    json.dumps(mt)
    assert mt["per_class"]["glasses"]["f1"] > m05["per_class"]["glasses"]["f1"]
    assert mt["per_class"]["glasses"]["threshold"] == thr[2]
    for key in ("accuracy", "subset_accuracy", "mean_accuracy", "mean_f1"):
        assert 0 <= mt[key] <= 1
    assert mt["accuracy"] == pytest.approx(np.mean([v["accuracy"] for v in mt["per_class"].values()]))
    assert "confusion_matrix" not in mt


def test_probs_to_pred_and_helpers():
    assert probs_to_pred([[0.2], [0.6]], "binary").tolist() == [0, 1]
    assert probs_to_pred([[0.2, 0.5, 0.3]], "multiclass").tolist() == [1]
    assert probs_to_pred([[0.2, 0.6]], "multilabel", [0.1, 0.7]).tolist() == [[1, 0]]
    counts, frac = confusion_fractions([0, 0, 2], [0, 1, 2], 3)
    assert counts.sum() == 3 and frac[1].sum() == 0 and frac[0].sum() == pytest.approx(1)
    assert per_sample_loss([0], [[0.9, 0.1]], "multiclass")[0] == pytest.approx(-np.log(0.9))


def test_errors_are_kerasclf_errors():
    with pytest.raises(DataError, match="unknown task"):
        classification_metrics([0], [[1.0]], "regression", ["a"])
    with pytest.raises(DataError, match="class names"):
        classification_metrics([0, 1], np.eye(3)[:2], "multiclass", ["a", "b"])
    with pytest.raises(DataError, match="labels must lie"):
        classification_metrics([0, 5], np.eye(3)[:2], "multiclass", ["a", "b", "c"])


def test_auroc_log_loss_attribute_accuracy_live_here_and_are_used():
    """The metrics the OOD flag, the audit and evaluate.attribute_accuracy report are the ones here."""
    assert ood.auroc is auroc and audit.multiclass_log_loss is multiclass_log_loss
    assert auroc([0.1, 0.2, 0.6], [0.5, 0.9]) == pytest.approx(5 / 6)   # 5 of 6 pairs ordered
    assert auroc([0.0, 0.0], [1.0]) == 1.0 and auroc([1.0], [0.0]) == 0.0
    # a class the model never gave probability: clipped to 1e-7 and renormalised, so finite
    assert multiclass_log_loss([0, 1], [[0.5, 0.5], [0.0, 1.0]]) == pytest.approx(np.log(2) / 2, abs=1e-5)
    assert np.isfinite(multiclass_log_loss([0, 2], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    y = np.array([[1, 0], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.4, 0.7], [0.3, 0.6]])
    assert mean_attribute_accuracy(y, p) == pytest.approx(4 / 6)
    assert mean_attribute_accuracy(y, p, [0.35, 0.65]) == 1.0
    assert mean_attribute_accuracy(y > 0.5, np.broadcast_to(np.array([True, False]), y.shape)) == pytest.approx(4 / 6)
    m = classification_metrics(y, p, "multilabel", ["a", "b"], threshold=[0.35, 0.5])
    assert m["accuracy"] == pytest.approx(5 / 6)
