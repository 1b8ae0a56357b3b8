"""PCA + KMeans clustering of features, with clusters named by hand once and reused.

The unsupervised classifier people build for a pile of unlabelled photos: extract features
(:mod:`kerasclf.features.extract`), reduce them with PCA (the variance kept is reported), cluster
with KMeans, look at one montage per cluster, fill in ``clusters.csv`` (cluster id → name), then
classify new folders with :func:`predict_folder`.

Example:
    >>> from kerasclf.features import run_cluster, read_names, predict_folder, ClusterModel  # doctest: +SKIP
    >>> out = run_cluster("photos/", features_model="resnet50_features", pca=50, k=8,  # doctest: +SKIP
    ...                   out_dir="runs/photos_clusters")                       # doctest: +SKIP
    >>> # then fill in runs/photos_clusters/clusters.csv by hand
    >>> cm = ClusterModel.load("runs/photos_clusters/clusters.skops")          # doctest: +SKIP
    >>> rows = predict_folder(cm, ["new_photos/"], read_names("runs/photos_clusters/clusters.csv"),  # doctest: +SKIP
    ...                       plot_path="runs/photos_clusters/predicted.png")   # doctest: +SKIP
"""
from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.preprocessing import StandardScaler

from kerasclf._files import write_rows
from kerasclf._progress import progress
from kerasclf.data import sources
from kerasclf.data.pipeline import file_batches, spec_batches
from kerasclf.data.reader import collect_image_paths
from kerasclf.data.spec import DataSpec
from kerasclf.errors import ConfigError, DataError, ModelError, RunExistsError
from kerasclf.features.artifacts import (
    ExtractorRecord,
    artifact_target,
    build_extractor,
    load_artifact,
    save_artifact,
    save_extractor_files,
)
from kerasclf.features.extract import extract_features, features_for_images

__all__ = ["ClusterModel", "fit_clusters", "elbow_silhouette", "montages", "write_names_template",
           "read_names", "cluster_scores", "predict_folder", "run_cluster", "NAMES_HEADER"]

NAMES_HEADER = ("cluster", "name")


@dataclass
class ClusterModel:
    """A fitted (optional scaler →) PCA → KMeans, with the record of the feature extractor.

    Attributes:
        kmeans: fitted ``sklearn.cluster.KMeans``.
        pca: fitted ``sklearn.decomposition.PCA`` or ``None``.
        scaler: fitted ``StandardScaler`` or ``None``.
        record: the feature extractor's record (``None``: features only, no image prediction).
        explained_variance: fraction of the feature variance the PCA keeps (1.0 without PCA).
        base_dir: where relative extractor files are resolved (set by :meth:`load`).

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(60, 5)); X[:30] += 5
        >>> cm = fit_clusters(X, pca=2, k=2)
        >>> cm.k, cm.n_components, len(set(cm.predict(X)))
        (2, 2, 2)
    """
    kmeans: Any
    pca: Any = None
    scaler: Any = None
    record: ExtractorRecord | None = None
    explained_variance: float = 1.0
    base_dir: Path | None = None
    extractor: Any = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.kmeans.n_clusters)

    @property
    def n_components(self) -> int | None:
        return int(self.pca.n_components_) if self.pca is not None else None

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Features → the space KMeans works in (scaled, PCA-reduced)."""
        x = np.asarray(features, dtype="float32")
        if self.scaler is not None:
            x = self.scaler.transform(x)
        if self.pca is not None:
            x = self.pca.transform(x)
        return np.asarray(x, dtype="float32")

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Cluster id of each feature vector."""
        return np.asarray(self.kmeans.predict(self.transform(features)), dtype=int)

    def feature_extractor(self) -> Any:
        """The Keras feature model, rebuilt from the record on first use."""
        if self.extractor is None:
            if self.record is None:
                raise ModelError("this clustering model has no feature extractor record; "
                                 "predict on features, or fit it with run_cluster")
            self.extractor = build_extractor(self.record, self.base_dir)
        return self.extractor

    def predict_images(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Cluster id of each raw 0..255 image ``(N, H, W, C)``."""
        rec = self.record
        feats = features_for_images(self.feature_extractor(), images, batch_size=batch_size,
                                    image_size=rec.image_size if rec else None,
                                    channels=rec.channels if rec else 3)
        return self.predict(feats)

    def save(self, path: str | Path, *, extractor: Any | None = None, overwrite: bool = False) -> Path:
        """Save as a skops file (``clusters.skops``, loads without running code) plus a JSON record beside it.

        ``extractor`` (the Keras model the features came from) is saved as
        ``<stem>.extractor.keras`` when the record cannot rebuild it from a name.
        """
        path = artifact_target(path, "clustering model", overwrite)
        record = self.record
        if record is not None:
            record = save_extractor_files(record, extractor, path.parent, path.stem)
        info = dict(self.info, kind="kerasclf.clusters", k=self.k, n_components=self.n_components,
                    explained_variance=self.explained_variance,
                    record=record.to_dict() if record else None)
        save_artifact({"kmeans": self.kmeans, "pca": self.pca, "scaler": self.scaler, "info": info}, path)
        path.with_suffix(".json").write_text(json.dumps(info, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ClusterModel":
        """Reload a model written by :meth:`save`."""
        path = Path(path)
        obj = load_artifact(path, "kerasclf.clusters", "clustering model", "ClusterModel.save")
        info = obj["info"]
        rec = ExtractorRecord.from_dict(info["record"]) if info.get("record") else None
        return cls(kmeans=obj["kmeans"], pca=obj["pca"], scaler=obj.get("scaler"), record=rec,
                   explained_variance=float(info.get("explained_variance", 1.0)),
                   base_dir=path.parent, info=info)


def fit_clusters(features: np.ndarray, *, pca: int | float | None = None, k: int = 8, seed: int = 0,
                 standardize: bool = False, record: ExtractorRecord | None = None,
                 n_init: int = 4) -> ClusterModel:
    """Fit (optional StandardScaler →) PCA → KMeans on features.

    Args:
        features: ``(N, D)``.
        pca: number of components (int), a variance fraction to keep (float in (0, 1)), or
            ``None`` for no PCA.
        k: number of clusters.
        seed: random state of PCA (randomised solver) and KMeans.
        standardize: scale each feature to unit variance first.
        record: the feature extractor's record, kept for prediction on images.
        n_init: KMeans restarts.

    Returns:
        A :class:`ClusterModel` (``explained_variance`` says how much variance PCA kept).

    Raises:
        ConfigError: bad ``k`` or ``pca``. DataError: fewer samples than clusters.

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(100, 20))
        >>> cm = fit_clusters(X, pca=0.5, k=3)
        >>> cm.k, 0.5 <= cm.explained_variance <= 1.0
        (3, True)
    """
    x = np.asarray(features, dtype="float32")
    if x.ndim != 2:
        raise DataError(f"features must be (N, D); got shape {x.shape}")
    if not isinstance(k, (int, np.integer)) or k < 2:
        raise ConfigError(f"k={k}: the number of clusters must be an integer >= 2")
    if len(x) < k:
        raise DataError(f"{len(x)} images but k={k} clusters; use a smaller k or more images")
    scaler = StandardScaler().fit(x) if standardize else None
    if scaler is not None:
        x = scaler.transform(x)
    pca_model, kept = None, 1.0
    if pca is not None:
        if isinstance(pca, float) and not 0 < pca < 1 and pca != int(pca):
            raise ConfigError(f"pca={pca}: give a component count (int) or a variance fraction in (0, 1)")
        if isinstance(pca, float) and pca >= 1:
            pca = int(pca)
        if isinstance(pca, (int, np.integer)):
            if pca < 1:
                raise ConfigError(f"pca={pca}: the component count must be >= 1")
            pca = min(int(pca), x.shape[1], len(x))
        pca_model = PCA(n_components=pca, random_state=seed, svd_solver="full").fit(x)
        x = pca_model.transform(x)
        kept = float(np.sum(pca_model.explained_variance_ratio_))
    km = KMeans(n_clusters=int(k), random_state=seed, n_init=n_init).fit(x)
    return ClusterModel(kmeans=km, pca=pca_model, scaler=scaler, record=record,
                        explained_variance=kept,
                        info={"sizes": np.bincount(km.labels_, minlength=k).tolist(), "seed": seed})


def cluster_scores(labels: np.ndarray, assignments: np.ndarray) -> dict[str, float]:
    """Agreement of clusters with known labels: adjusted Rand index, purity, NMI.

    Purity: each cluster votes for its majority label; the fraction of items that match.
    Chance purity is the largest class's share.

    Example:
        >>> cluster_scores(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
        {'ari': 1.0, 'purity': 1.0, 'nmi': 1.0, 'chance_purity': 0.5}
    """
    y = np.asarray(labels).astype(int).reshape(-1)
    a = np.asarray(assignments).astype(int).reshape(-1)
    if len(y) != len(a):
        raise DataError(f"{len(y)} labels but {len(a)} cluster assignments")
    table = np.zeros((a.max() + 1, y.max() + 1), dtype=int)
    np.add.at(table, (a, y), 1)
    return {"ari": round(float(adjusted_rand_score(y, a)), 6),
            "purity": round(float(table.max(axis=1).sum() / len(y)), 6),
            "nmi": round(float(normalized_mutual_info_score(y, a)), 6),
            "chance_purity": round(float(np.bincount(y).max() / len(y)), 6)}


def elbow_silhouette(features: np.ndarray, ks: Sequence[int], path: str | Path | None = None, *,
                     pca: int | float | None = None, seed: int = 0,
                     sample: int = 2000) -> dict[int, dict[str, float]]:
    """Inertia (elbow) and silhouette for each K, plotted side by side to help choose K.

    Args:
        features: ``(N, D)``.
        ks: the K values to try (each >= 2).
        path: PNG to write (``None``: no plot).
        pca: as in :func:`fit_clusters`.
        seed: random state.
        sample: silhouette is computed on at most this many points.

    Returns:
        ``{k: {"inertia": ..., "silhouette": ...}}``.

    Example:
        >>> res = elbow_silhouette(fs.features, [4, 8, 12], "runs/x/elbow.png", pca=50)  # doctest: +SKIP
        >>> max(res, key=lambda k: res[k]["silhouette"])  # doctest: +SKIP
    """
    out: dict[int, dict[str, float]] = {}
    base = fit_clusters(features, pca=pca, k=2, seed=seed, n_init=1)
    x = base.transform(features)

    for k in progress(ks, desc="elbow", unit="K"):
        km = KMeans(n_clusters=int(k), random_state=seed, n_init=2).fit(x)
        sil = silhouette_score(x, km.labels_, sample_size=min(sample, len(x)), random_state=seed)
        out[int(k)] = {"inertia": float(km.inertia_), "silhouette": float(sil)}
    if path is not None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        ks_ = sorted(out)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
        a1.plot(ks_, [out[k]["inertia"] for k in ks_], "o-")
        a1.set(xlabel="K", ylabel="inertia", title="elbow")
        a2.plot(ks_, [out[k]["silhouette"] for k in ks_], "o-", color="C1")
        a2.set(xlabel="K", ylabel="silhouette", title="silhouette (higher is better)")
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
        plt.close(fig)
    return out


def _to_uint8_rgb(img: np.ndarray, min_side: int = 48) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(a if a.max() > 1.0 else a * 255.0, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = a[..., :3]
    if min(a.shape[:2]) < min_side:  # blow tiny images (8x8 digits) up, nearest neighbour
        f = int(np.ceil(min_side / min(a.shape[:2])))
        a = np.repeat(np.repeat(a, f, axis=0), f, axis=1)
    return a


def _grid(images: list[np.ndarray], cols: int, pad: int = 2) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    rows = int(np.ceil(len(images) / cols))
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for n, im in enumerate(images):
        r, c = divmod(n, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y:y + im.shape[0], x:x + im.shape[1]] = im
    return canvas


def _load_items(images: Any, index: np.ndarray, size: tuple[int, int] = (64, 64)) -> list[np.ndarray]:
    """Images at ``index`` (uint8) from an array, a DataSpec or a list of paths (read as training reads them)."""
    if isinstance(images, DataSpec):
        if images.images is not None:
            return [images.images[i] for i in index]
        images = images.paths
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (str, Path)):
        return [x.astype(np.uint8) for _, xb in file_batches([str(images[i]) for i in index], size) for x in xb]
    return [np.asarray(images[i]) for i in index]


def montages(images: Any, assignments: np.ndarray, out_dir: str | Path, per_cluster: int = 25, *,
             names: dict[int, str] | None = None, seed: int = 0) -> list[Path]:
    """One PNG grid of member images per cluster: ``out_dir/cluster_00.png`` ...

    Args:
        images: ``(N, H, W, C)`` array, a :class:`~kerasclf.data.spec.DataSpec`, or image paths.
            Only the shown images are loaded.
        assignments: cluster id per image.
        out_dir: folder to write into.
        per_cluster: images per montage (a random sample of the cluster when larger).
        names: optional cluster names for the file names (``cluster_03_cats.png``).
        seed: sampling seed.

    Returns:
        The PNG paths, in cluster order (an empty cluster gets no file).

    Example:
        >>> montages(spec, cm.predict(fs.features), "runs/x/montages", per_cluster=25)  # doctest: +SKIP
        [PosixPath('runs/x/montages/cluster_00.png'), ...]
    """
    from PIL import Image

    a = np.asarray(assignments).astype(int)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(per_cluster)))
    written: list[Path] = []
    for c in range(int(a.max()) + 1 if len(a) else 0):
        members = np.flatnonzero(a == c)
        if len(members) == 0:
            continue
        if len(members) > per_cluster:
            members = np.sort(rng.choice(members, per_cluster, replace=False))
        tiles = [_to_uint8_rgb(im) for im in _load_items(images, members)]
        if not tiles:
            continue
        label = ""
        if names and c in names:
            label = "_" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in names[c])[:30]
        p = out / f"cluster_{c:02d}{label}.png"
        Image.fromarray(_grid(tiles, min(cols, len(tiles)))).save(p)
        written.append(p)
    return written


def write_names_template(path: str | Path, k: int, *, overwrite: bool = False) -> Path:
    """Write ``clusters.csv``: header ``cluster,name`` and one row per cluster (``cluster_0`` ...).

    An existing file (probably filled in by hand) is kept unless ``overwrite=True``.

    Example:
        >>> import tempfile, os
        >>> p = write_names_template(os.path.join(tempfile.mkdtemp(), "clusters.csv"), 3)
        >>> read_names(p)
        {0: 'cluster_0', 1: 'cluster_1', 2: 'cluster_2'}
    """
    path = Path(path)
    if path.exists() and not overwrite:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(NAMES_HEADER)
        for c in range(int(k)):
            w.writerow([c, f"cluster_{c}"])
    return path


def read_names(path: str | Path, k: int | None = None) -> dict[int, str]:
    """Read a filled ``clusters.csv`` into ``{cluster_id: name}``, validating every row.

    Args:
        path: the CSV (header ``cluster,name``).
        k: if given, ids must be in ``0..k-1`` and every cluster must be named.

    Raises:
        ConfigError: one line naming the file and row: a non-integer or out-of-range id, a
            duplicate id, an empty name, a missing header or missing clusters.

    Example:
        >>> names = read_names("runs/x/clusters.csv", k=8)  # doctest: +SKIP
        >>> names[0]  # doctest: +SKIP
        'cats'
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: names file not found; write one with write_names_template "
                          f"(kerasclf cluster writes clusters.csv)")
    names: dict[int, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != list(NAMES_HEADER):
        raise ConfigError(f"{path}: row 1: the header must be 'cluster,name'")
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 2:
            raise ConfigError(f"{path}: row {n}: expected 'cluster,name', got {','.join(row)!r}")
        cid, name = row[0].strip(), ",".join(row[1:]).strip()
        try:
            c = int(cid)
        except ValueError:
            raise ConfigError(f"{path}: row {n}: cluster id {cid!r} is not an integer") from None
        if c < 0 or (k is not None and c >= k):
            rng = f"0..{k - 1}" if k is not None else ">= 0"
            raise ConfigError(f"{path}: row {n}: cluster id {c} is out of range ({rng})")
        if c in names:
            raise ConfigError(f"{path}: row {n}: cluster id {c} appears twice")
        if not name:
            raise ConfigError(f"{path}: row {n}: cluster {c} has an empty name")
        names[c] = name
    if k is not None:
        missing = [c for c in range(k) if c not in names]
        if missing:
            raise ConfigError(f"{path}: no name for cluster(s) {', '.join(map(str, missing))}; "
                              f"add a row per cluster 0..{k - 1}")
    return names


def predict_folder(cluster_model: ClusterModel, paths_or_spec: Any, names: dict[int, str] | None = None,
                   *, plot_path: str | Path | None = None, first: int = 15, batch_size: int = 64,
                   out_csv: str | Path | None = None, verbose: bool = True) -> list[dict[str, Any]]:
    """Assign every image of a folder (or spec) to a named cluster; plot the first ``first``.

    Args:
        cluster_model: a fitted / loaded :class:`ClusterModel` with a feature extractor record.
        paths_or_spec: image files / folders, or a :class:`~kerasclf.data.spec.DataSpec`.
        names: ``{cluster: name}`` from :func:`read_names` (default ``cluster_<id>``).
        plot_path: PNG with the first ``first`` images titled by their predicted names.
        first: how many images to plot.
        batch_size: images per forward pass.
        out_csv: optional CSV of the rows.
        verbose: print ``path<TAB>name`` for every image.

    Returns:
        One row per image: ``path``, ``cluster``, ``name`` (and ``error`` for unreadable files).

    Example:
        >>> cm = ClusterModel.load("runs/x/clusters.skops")  # doctest: +SKIP
        >>> rows = predict_folder(cm, ["new/"], read_names("runs/x/clusters.csv"),  # doctest: +SKIP
        ...                       plot_path="runs/x/predicted.png")
        >>> rows[0]["name"]  # doctest: +SKIP
    """
    names = dict(names or {})
    rec = cluster_model.record
    size = rec.image_size if rec else None
    channels = rec.channels if rec else 3
    fmodel = cluster_model.feature_extractor()
    rows: list[dict[str, Any]] = []
    shown: list[tuple[np.ndarray, str]] = []

    def take(ids: list[str], x: np.ndarray) -> None:
        cl = cluster_model.predict(features_for_images(fmodel, x, batch_size=batch_size,
                                                       image_size=size, channels=channels))
        for pid, img, c in zip(ids, x, cl):
            name = names.get(int(c), f"cluster_{int(c)}")
            rows.append({"path": pid, "cluster": int(c), "name": name, "error": ""})
            if len(shown) < first:
                shown.append((img, name))

    if isinstance(paths_or_spec, DataSpec):
        spec = paths_or_spec
        ids = spec.ids()
        pos = 0
        for x, _ in progress(spec_batches(spec, image_size=size, channels=channels, batch_size=batch_size),
                             total=-(-len(ids) // batch_size), desc="clusters", unit="batch"):
            take(ids[pos:pos + len(x)], x)
            pos += len(x)
    else:
        files = [str(p) for p in collect_image_paths(paths_or_spec)]
        if size is None:
            raise ModelError("this clustering model's extractor record has no image size; refit it with image_size=")
        batches = file_batches(files, size, batch_size, channels=channels)
        for ok, x in progress(batches, total=-(-len(files) // batch_size), desc="clusters", unit="batch"):
            take(ok, x)
        rows += [{"path": p, "cluster": "", "name": "", "error": why} for p, why in batches.skipped]
    if verbose:
        for r in rows:
            print(f"{r['path']}\t{r['name'] or 'ERROR: ' + r['error']}")
    if plot_path is not None and shown:
        _plot_named(shown, plot_path)
    if out_csv is not None:
        write_rows(out_csv, rows, ["path", "cluster", "name", "error"])
    return rows


def _plot_named(items: list[tuple[np.ndarray, str]], path: str | Path, cols: int = 5) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = int(np.ceil(len(items) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (img, name) in zip(axes.ravel(), items):
        ax.imshow(_to_uint8_rgb(img, min_side=1))
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def as_spec(data: Any) -> Any:
    """A DataSpec from a spec, ``"digits"``, a folder of class subfolders, or a folder of loose
    images (unlabelled: one class ``unlabelled``; clustering needs no labels)."""
    if isinstance(data, DataSpec):
        return data
    if str(data) == "digits":
        return sources.digits()
    try:
        return sources.from_folder(data)
    except DataError as exc:
        if "no class subfolders" not in str(exc):
            raise
    return sources.from_unlabelled(data)


def run_cluster(data_path_or_spec: Any, *, features_model: Any, pca: int | float | None, k: int,
                out_dir: str | Path, layer: str | None = "auto",
                image_size: tuple[int, int] | None = None, weights: Any = "default",
                build_kwargs: dict[str, Any] | None = None,
                cache_dir: str | Path | None = None, seed: int = 0, standardize: bool = False,
                elbow_ks: Sequence[int] | None = None, per_cluster: int = 25, batch_size: int = 64,
                overwrite: bool = False, verbose: int = 1) -> dict[str, Any]:
    """``kerasclf cluster``: extract features, fit PCA + KMeans, save, montages, names template.

    Writes into ``out_dir``: ``clusters.skops`` (+ ``clusters.json``, and
    ``clusters.extractor.keras`` when the extractor is not a pretrained zoo name or a file),
    ``montages/cluster_XX.png``, ``clusters.csv`` (names template, kept if it exists),
    ``assignments.csv``, ``elbow.png`` (with ``elbow_ks``), ``summary.json``.

    Args:
        data_path_or_spec: a folder (class subfolders optional), ``"digits"``, or a DataSpec.
        features_model: zoo name, ``.keras`` path or Keras model.
        pca: components (int) or variance fraction (float), or ``None``.
        k: clusters.
        out_dir: output folder.
        layer, image_size, weights: as in :func:`~kerasclf.features.extract.extract_features`.
        cache_dir: feature cache (default ``<out_dir>/features``).
        seed, standardize: as in :func:`fit_clusters`.
        elbow_ks: also write the elbow / silhouette plot for these K.
        per_cluster: images per montage.
        batch_size: images per forward pass.
        overwrite: replace an existing ``clusters.skops``.
        build_kwargs: extra keyword arguments for the zoo builder (``num_classes``).
        verbose: progress bar and a summary line.

    Returns:
        A summary dict: paths, explained variance, cluster sizes, extraction speed and, when the
        data has labels (two or more classes), ``scores`` (ARI, purity, NMI).

    Example:
        >>> s = run_cluster("photos/", features_model="resnet50_features", weights="imagenet",  # doctest: +SKIP
        ...                 pca=50, k=8, out_dir="runs/photos_clusters", elbow_ks=[4, 8, 12])
        >>> s["explained_variance"], s["sizes"], s.get("scores")  # doctest: +SKIP
    """
    out = Path(out_dir)
    target = out / "clusters.skops"
    if target.exists() and not overwrite:
        raise RunExistsError(str(out))
    spec = as_spec(data_path_or_spec)
    fs = extract_features(features_model, spec, layer=layer, batch_size=batch_size,
                          cache_dir=cache_dir if cache_dir is not None else out / "features",
                          image_size=image_size, weights=weights, build_kwargs=build_kwargs,
                          verbose=verbose)
    rec = ExtractorRecord.from_dict(fs.record.to_dict())
    rec.task = "clusters"
    cm = fit_clusters(fs.features, pca=pca, k=k, seed=seed, standardize=standardize, record=rec)
    assign = cm.predict(fs.features)
    cm.save(target, extractor=fs.extractor, overwrite=overwrite)
    shots = montages(spec, assign, out / "montages", per_cluster=per_cluster, seed=seed)
    names_csv = write_names_template(out / "clusters.csv", k)
    ids = fs.ids
    write_rows(out / "assignments.csv", [{"id": i, "cluster": int(c)} for i, c in zip(ids, assign)],
                ["id", "cluster"])
    summary: dict[str, Any] = {
        "model": str(target), "names_csv": str(names_csv), "montages": [str(p) for p in shots],
        "k": k, "pca_components": cm.n_components, "explained_variance": cm.explained_variance,
        "sizes": np.bincount(assign, minlength=k).tolist(), "n_images": len(ids),
        "feature_dim": int(fs.features.shape[1]), "features_from_cache": fs.from_cache,
        "images_per_second": fs.images_per_second,
    }
    if elbow_ks:
        summary["elbow"] = elbow_silhouette(fs.features, elbow_ks, out / "elbow.png", pca=pca, seed=seed)
        summary["elbow_plot"] = str(out / "elbow.png")
    labels = np.asarray(spec.labels)
    if labels.ndim == 1 and spec.num_classes > 1 and len(np.unique(labels)) > 1:
        summary["scores"] = cluster_scores(labels, assign)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if verbose:
        msg = (f"clusters: k={k}, PCA {cm.n_components or 'off'} "
               f"(variance kept {cm.explained_variance:.1%}), sizes {summary['sizes']}")
        if "scores" in summary:
            s = summary["scores"]
            msg += f"; purity {s['purity']:.3f}, ARI {s['ari']:.3f}"
        print(msg)
        print(f"name the clusters in {names_csv} (see {out / 'montages'})")
    return summary
