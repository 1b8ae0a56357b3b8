"""Features and clusters: cached feature extraction, scikit-learn heads, PCA + KMeans.

Example:
    >>> from kerasclf.features import extract_features, fit_head, fit_clusters   # doctest: +SKIP
    >>> fs = extract_features("resnet50_features", spec, weights="imagenet")  # doctest: +SKIP
    >>> head = fit_head(fs.features, fs.labels, kind="logreg")  # doctest: +SKIP
    >>> clusters = fit_clusters(fs.features, pca=50, k=10)  # doctest: +SKIP
"""
from kerasclf.features.cluster import (ClusterModel, cluster_scores, elbow_silhouette, fit_clusters,
                                       montages, predict_folder, read_names, run_cluster,
                                       write_names_template)
from kerasclf.features.extract import FeatureSet, extract_features, features_for_images
from kerasclf.features.heads import (HEAD_KINDS, HeadPipeline, evaluate_head, fit_head, load_head,
                                     save_head)
from kerasclf.features.commands import load_predictor, run_features, run_head
from kerasclf.features.artifacts import ExtractorRecord, build_extractor, data_fingerprint, weights_fingerprint

__all__ = [
    "FeatureSet", "extract_features", "features_for_images",
    "HEAD_KINDS", "HeadPipeline", "fit_head", "evaluate_head", "save_head", "load_head",
    "ClusterModel", "fit_clusters", "cluster_scores", "elbow_silhouette", "montages",
    "write_names_template", "read_names", "predict_folder", "run_cluster",
    "run_features", "run_head", "load_predictor",
    "ExtractorRecord", "build_extractor", "data_fingerprint", "weights_fingerprint",
]
