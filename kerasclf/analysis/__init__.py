"""Analysis of trained models: metrics, figures, attribution, embeddings, calibration, report.

Each module works on its own; :func:`analyze` composes them into one folder of figures,
``metrics.json`` and a self-contained ``report.html``. Heavy libraries (matplotlib, TensorFlow,
tf-keras-vis, scikit-learn) are imported only when a function needs them.

Example:
    >>> from kerasclf.analysis import classification_metrics
    >>> classification_metrics([0, 1], [[0.2], [0.7]], "binary", ["no", "yes"])["accuracy"]
    1.0
"""
from kerasclf.analysis.analyze import analyze, load_split
from kerasclf.analysis.calibration import (apply_temperature, expected_calibration_error, fit_temperature,
                                           negative_log_likelihood, reliability_diagram)
from kerasclf.analysis.comparison import ChosenEvidence, comparison_report
from kerasclf.analysis.embed import embed_features
from kerasclf.analysis.explain import build_explain_model, explain, find_last_conv_layer, overlay
from kerasclf.analysis.metrics import choose_thresholds, classification_metrics, per_sample_loss, probs_to_pred
from kerasclf.analysis.plots import plot_confusion, plot_gallery, plot_history, plot_per_class
from kerasclf.analysis.report import Section, Table, gap_sentence, write_report

__all__ = [
    "analyze", "load_split",
    "classification_metrics", "probs_to_pred", "choose_thresholds", "per_sample_loss",
    "plot_history", "plot_confusion", "plot_gallery", "plot_per_class",
    "explain", "find_last_conv_layer", "build_explain_model", "overlay",
    "embed_features",
    "expected_calibration_error", "reliability_diagram", "fit_temperature", "apply_temperature",
    "negative_log_likelihood",
    "write_report", "Section", "Table", "gap_sentence", "comparison_report", "ChosenEvidence",
]
