"""ECE, reliability diagram and temperature scaling on synthetic probabilities."""
import numpy as np
import pytest

from kerasclf.analysis.calibration import (apply_temperature, expected_calibration_error, fit_temperature,
                                           negative_log_likelihood, reliability_diagram)
from kerasclf.errors import DataError


def _calibrated_multiclass(n=6000, k=4, seed=0):
    """Labels drawn from the predicted distribution: calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return logits, p, y


def test_ece_calibrated_is_near_zero_and_overconfident_is_larger():
    logits, p, y = _calibrated_multiclass()
    ece = expected_calibration_error(y, p)
    over = np.exp(logits * 3) / np.exp(logits * 3).sum(1, keepdims=True)
    ece_over = expected_calibration_error(y, over)
    assert ece < 0.03
    assert ece_over > 0.1 and ece_over > 4 * ece


def test_ece_binary_calibrated():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, 20000) < p).astype(int)
    assert expected_calibration_error(y, p[:, None], task="binary") < 0.02
    sharp = np.where(p > 0.5, 0.99, 0.01)
    assert expected_calibration_error(y, sharp, task="binary") > 0.15


def test_temperature_scaling_reduces_nll_and_ece():
    logits, _, y = _calibrated_multiclass(seed=1)
    over = logits * 3  # over-confident logits
    val, test = slice(0, 3000), slice(3000, None)
    t = fit_temperature(over[val], y[val], task="multiclass")
    assert 2.4 < t < 3.6  # recovers the factor
    before = apply_temperature(over[test], 1.0, task="multiclass")
    after = apply_temperature(over[test], t, task="multiclass")
    assert negative_log_likelihood(y[test], after) < negative_log_likelihood(y[test], before) - 0.05
    assert expected_calibration_error(y[test], after) < expected_calibration_error(y[test], before)
    # probabilities work as well as logits, and the predicted class never changes
    probs = np.exp(over) / np.exp(over).sum(1, keepdims=True)
    assert fit_temperature(probs[val], y[val]) == pytest.approx(t, rel=0.05)
    assert (after.argmax(1) == before.argmax(1)).all()


def test_temperature_binary_sigmoid():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, 4000)
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-z))).astype(int)
    over = 1 / (1 + np.exp(-4 * z))
    t = fit_temperature(over[:, None], y, task="binary")
    assert t > 2.5
    cal = apply_temperature(over[:, None], t, task="binary")
    assert cal.shape == (4000, 1)
    assert negative_log_likelihood(y, cal, "binary") < negative_log_likelihood(y, over[:, None], "binary")


def test_reliability_diagram_png(tmp_path, png_ok):
    logits, p, y = _calibrated_multiclass(n=500)
    out = reliability_diagram(y, p, tmp_path / "rel.png", calibrated_probs=apply_temperature(p, 1.3))
    png_ok(out)


def test_errors():
    with pytest.raises(DataError):
        apply_temperature([[0.5, 0.5]], 0.0)
    with pytest.raises(DataError):
        fit_temperature(np.zeros((3, 2)), [0, 1])
