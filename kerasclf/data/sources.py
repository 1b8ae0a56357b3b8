"""Data sources: each turns one kind of labelled image collection into a :class:`DataSpec`.

Sources and the keys :func:`load` accepts for each (``source:`` in a recipe's ``data`` section;
the pipeline keys ``image_size``, ``batch_size``, ``cache``, ``augment``, ``split``, ``channels``
and ``shuffle`` belong to :class:`kerasclf.train.recipe.DataCfg` and never reach this module):

=========  ==================================================================================
folder     ``path``, ``extensions``, ``follow_symlinks``
flat       ``path``, ``pattern``, ``extensions``, ``follow_symlinks``
csv        ``csv_path`` (or ``path``), ``path_column``, ``label_column``, ``root``,
           ``group_column``, ``split_column``, ``multilabel``, ``label_columns``, ``separator``
celeba     ``attr_file`` (or ``path``), ``image_dir``, ``attributes``, ``identity_file``,
           ``partition_file``, ``max_rows``
tfds       ``name``, ``split``, ``data_dir``, ``image_key``, ``label_key``, ``download``,
           ``max_examples``, ``resize_to``
keras      ``name`` (cifar10, cifar100, mnist, fashion_mnist), ``label_mode``
digits     (none)
npz        ``path``, ``images_key``, ``labels_key``, ``class_names_key``
=========  ==================================================================================

Pre-split data (a ``train/ val/ test/`` folder, keras.datasets' train/test parts, a CSV
``split`` column, CelebA's partition file) fills ``spec.preset_split``; :mod:`kerasclf.data.splits`
uses a given ``test`` part as the test split and carves ``val`` out of ``train`` when missing.

Example:
    >>> from kerasclf.data import sources
    >>> spec = sources.load({"source": "digits"})
    >>> len(spec), spec.num_classes, spec.images.shape[1:]
    (1797, 10, (8, 8, 1))
"""
from __future__ import annotations

import csv
import inspect
import os
import re
from typing import Any, Callable, Sequence

import keras
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from kerasclf.data.reader import IMAGE_EXTENSIONS, is_image_file
from kerasclf.data.spec import DataSpec, infer_task
from kerasclf.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "from_folder", "from_flat", "from_csv", "from_csv_multilabel", "from_celeba", "from_tfds",
    "from_keras_dataset", "from_arrays", "from_npz", "from_unlabelled", "digits", "load", "SOURCES",
    "CELEBA_ATTRIBUTES", "CELEBA_SEED_32", "KERAS_CLASS_NAMES", "SPLIT_ALIASES",
]

#: Folder names of a pre-split layout and the split each stands for.
SPLIT_ALIASES: dict[str, str] = {"train": "train", "training": "train", "val": "val", "valid": "val",
                                 "validation": "val", "test": "test", "testing": "test"}

#: Recipe ``data`` keys that belong to the pipeline / trainer, not to a source.

CELEBA_ATTRIBUTES: tuple[str, ...] = tuple(
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
    .split())

#: 32 of CelebA's 40 attributes. The seed keeps 32 but its list is not recorded; this one drops
#: the 8 attributes most often reported as subjective or unreliably labelled (Attractive,
#: Oval_Face, Pointy_Nose, Big_Lips, Big_Nose, Narrow_Eyes, Arched_Eyebrows, Blurry), keeping the
#: visually well-defined ones. Pass your own list to ``from_celeba(attributes=...)`` to match a paper.
CELEBA_SEED_32: tuple[str, ...] = tuple(a for a in CELEBA_ATTRIBUTES if a not in {
    "Attractive", "Oval_Face", "Pointy_Nose", "Big_Lips", "Big_Nose", "Narrow_Eyes",
    "Arched_Eyebrows", "Blurry"})

_CIFAR100_FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile "
    "cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp "
    "lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree "
    "orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum "
    "rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider "
    "squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
    "trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()
_CIFAR100_COARSE = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things "
    "large_natural_outdoor_scenes large_omnivores_and_herbivores medium_mammals "
    "non-insect_invertebrates people reptiles small_mammals trees vehicles_1 vehicles_2").split()

#: Class names of the keras.datasets image sets.
KERAS_CLASS_NAMES: dict[str, list[str]] = {
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "cifar100": _CIFAR100_FINE,
    "cifar100_coarse": _CIFAR100_COARSE,
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}


# ----------------------------------------------------------------------------- helpers
def _exts(extensions: Sequence[str]) -> tuple[str, ...]:
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


def _walk_images(folder: str, extensions: tuple[str, ...], follow_symlinks: bool,
                 skipped: list[tuple[str, str]]) -> list[str]:
    """Image files under ``folder`` (recursive, sorted, hidden ignored, loop-safe)."""
    out: list[str] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=follow_symlinks):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop when following links
            skipped.append((root, "symlink loop: folder already visited, not followed"))
            dirs[:] = []
            continue
        seen.add(real)
        keep = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            full = os.path.join(root, d)
            if os.path.islink(full) and not follow_symlinks:
                skipped.append((full, "symlinked folder not followed (follow_symlinks=False)"))
                continue
            keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            if f.startswith("."):
                continue
            full = os.path.join(root, f)
            if is_image_file(f, extensions):
                out.append(full)
            else:
                skipped.append((full, f"not an image extension ({', '.join(extensions)})"))
    return sorted(out)


def _subdirs(folder: str, follow_symlinks: bool, skipped: list[tuple[str, str]] | None = None) -> list[str]:
    out = []
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if e.name.startswith("."):
            continue
        if e.is_symlink() and not follow_symlinks:
            if e.is_dir() and skipped is not None:
                skipped.append((e.path, "symlinked folder not followed (follow_symlinks=False)"))
            continue
        if e.is_dir():
            out.append(e.name)
    return out


def _check_dir(path: str | os.PathLike, what: str = "data folder") -> str:
    p = os.fspath(path)
    if not os.path.exists(p):
        raise DataError(f"{p}: no such {what}; check the path")
    if not os.path.isdir(p):
        raise DataError(f"{p}: is a file, not a {what}; give the folder that holds the images")
    return p


# ----------------------------------------------------------------------------- folder
def from_folder(path: str | os.PathLike, *, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                follow_symlinks: bool = False) -> DataSpec:
    """A folder of class subfolders (``path/<class>/*.jpg``), or a pre-split layout.

    When ``path`` holds ``train/`` plus ``val/`` (or ``valid``/``validation``) and/or ``test/``,
    each with class subfolders, it is the pre-split layout: ``spec.preset_split`` says which
    part each image came from and the class names are the union over the parts.

    Args:
        path: the folder.
        extensions: image file extensions to take (case-insensitive); others are listed in
            ``spec.skipped``.
        follow_symlinks: follow symlinked folders (loops are detected and skipped).

    Returns:
        A :class:`DataSpec` of paths (sorted), labels from the sorted class names, task
        ``binary`` for two classes and ``multiclass`` above.

    Raises:
        DataError: missing folder, no class subfolders, or an empty class folder.

    Example:
        >>> spec = from_folder("data/pets")  # doctest: +SKIP
        >>> spec.class_names  # doctest: +SKIP
        ['cat', 'dog']
    """
    root = _check_dir(path)
    exts = _exts(extensions)
    skipped: list[tuple[str, str]] = []
    top = _subdirs(root, follow_symlinks, skipped)
    split_dirs = {d: SPLIT_ALIASES[d.lower()] for d in top if d.lower() in SPLIT_ALIASES}
    presplit = ("train" in split_dirs.values() and len(set(split_dirs.values())) >= 2
                and all(_subdirs(os.path.join(root, d), follow_symlinks) for d in split_dirs))
    parts: list[tuple[str | None, str]] = ([(split_dirs[d], os.path.join(root, d)) for d in sorted(split_dirs)]
                                           if presplit else [(None, root)])
    items: list[tuple[str, str, str | None]] = []  # (path, class, split)
    for split, base in parts:
        classes = _subdirs(base, follow_symlinks, skipped if split else None)
        if not classes:
            loose = [f for f in os.listdir(base) if is_image_file(f, exts)]
            hint = (" (it holds image files directly: use source 'flat' with a file-name pattern, "
                    "or move them into one subfolder per class)" if loose else "")
            raise DataError(f"{base}: no class subfolders found{hint}; expected {base}/<class>/<image>")
        for c in classes:
            files = _walk_images(os.path.join(base, c), exts, follow_symlinks, skipped)
            if not files:
                raise DataError(f"{os.path.join(base, c)}: empty class folder (no {', '.join(exts)} files); "
                                f"add images to it or remove the folder")
            items += [(f, c, split) for f in files]
    if presplit:  # ignore stray non-split top-level folders, but say so
        for d in top:
            if d not in split_dirs:
                skipped.append((os.path.join(root, d), "folder outside train/val/test ignored (pre-split layout)"))
    class_names = sorted({c for _, c, _ in items})
    index = {c: i for i, c in enumerate(class_names)}
    items.sort(key=lambda t: t[0])
    return DataSpec(class_names=class_names, labels=np.array([index[c] for _, c, _ in items], dtype=int),
                    paths=[p for p, _, _ in items], task=infer_task(len(class_names)),
                    preset_split=np.array([s for _, _, s in items], dtype=object) if presplit else None,
                    source=f"folder {root}", skipped=skipped)


# ----------------------------------------------------------------------------- flat
def from_unlabelled(path: str | os.PathLike, *, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                     follow_symlinks: bool = False) -> DataSpec:
    """Every image under ``path`` (any depth) as one class ``unlabelled``: for autoencoders and
    clustering, where a folder of photos with no class subfolders is valid input.

    Example:
        >>> spec = from_unlabelled("photos/")          # doctest: +SKIP
        >>> spec.class_names
        ['unlabelled']
    """
    folder = _check_dir(path)
    skipped: list[tuple[str, str]] = []
    paths = sorted(_walk_images(folder, _exts(extensions), follow_symlinks, skipped))
    if not paths:
        raise DataError(f"{folder}: no images found (extensions: {', '.join(_exts(extensions))})")
    return DataSpec(class_names=["unlabelled"], labels=np.zeros(len(paths), dtype=int), paths=paths,
                    task="multiclass", source=f"unlabelled folder {folder}", skipped=skipped)


def from_flat(path: str | os.PathLike, *, pattern: str = r"^([A-Za-z]+)[._-]",
              extensions: Sequence[str] = IMAGE_EXTENSIONS, follow_symlinks: bool = False) -> DataSpec:
    """Images whose file names carry the class (``cat.12.jpg`` → ``cat``), searched recursively.

    Args:
        path: the folder.
        pattern: a regular expression searched in the file name; group 1 is the class.
        extensions: image file extensions to take.
        follow_symlinks: follow symlinked folders (loops are detected).

    Returns:
        A :class:`DataSpec`; files whose names do not match are listed in ``spec.skipped``.

    Raises:
        DataError: no file name matches the pattern.

    Example:
        >>> spec = from_flat("train/", pattern=r"^(cat|dog)\\.")  # doctest: +SKIP
    """
    root = _check_dir(path)
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"pattern {pattern!r} is not a valid regular expression ({e})") from None
    if rx.groups < 1:
        raise ConfigError(f"pattern {pattern!r} needs a group, e.g. r'^([a-z]+)\\.', whose text is the class")
    skipped: list[tuple[str, str]] = []
    files = _walk_images(root, _exts(extensions), follow_symlinks, skipped)
    paths, names = [], []
    for f in files:
        m = rx.search(os.path.basename(f))
        if m and m.group(1):
            paths.append(f)
            names.append(m.group(1))
        else:
            skipped.append((f, f"file name does not match pattern {pattern!r}"))
    if not paths:
        raise DataError(f"{root}: no file name matches pattern {pattern!r} ({len(files)} image files); "
                        f"change the pattern so that group 1 captures the class")
    class_names = sorted(set(names))
    index = {c: i for i, c in enumerate(class_names)}
    return DataSpec(class_names=class_names, labels=np.array([index[n] for n in names], dtype=int),
                    paths=paths, task=infer_task(len(class_names)), source=f"flat {root} {pattern}",
                    skipped=skipped)


# ----------------------------------------------------------------------------- csv
def _read_csv(csv_path: str) -> tuple[list[str], list[dict[str, str]]]:
    if not os.path.isfile(csv_path):
        raise DataError(f"{csv_path}: no such CSV file; check the path")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(4096)
        f.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(f, dialect=dialect)
        rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
        header = [h.strip() for h in (reader.fieldnames or [])]
    if not rows:
        raise DataError(f"{csv_path}: no rows; expected a header line and one row per image")
    return header, rows


def _need_cols(csv_path: str, header: list[str], cols: Sequence[str]) -> None:
    for c in cols:
        if c not in header:
            raise DataError(f"{csv_path}: no column {c!r} (columns: {', '.join(header)}); "
                            f"set the column option to one of them")


def _resolve(p: str, root: str) -> str:
    return p if os.path.isabs(p) else os.path.normpath(os.path.join(root, p))


def _inside(full: str, base: str) -> bool:
    """Whether ``full`` lies in ``base`` once both are absolute and normalised (``..`` resolved)."""
    full, base = os.path.normpath(os.path.abspath(full)), os.path.normpath(os.path.abspath(base))
    return full == base or full.startswith(base.rstrip(os.sep) + os.sep)


def from_csv(csv_path: str | os.PathLike, *, path_column: str = "path", label_column: str = "label",
             root: str | os.PathLike | None = None, group_column: str | None = None,
             split_column: str | None = None, class_names: Sequence[str] | None = None,
             multilabel: bool = False, label_columns: Sequence[str] | None = None,
             separator: str = r"[|\s]+", allow_outside: bool = False) -> DataSpec:
    """A CSV with one row per image: ``path,label`` (plus optional group and split columns).

    Relative paths are resolved against ``root`` (default: the CSV's folder). Rows whose file
    does not exist are listed in ``spec.skipped``. A path that points outside ``root`` (an
    absolute path, or ``../`` climbing out) is listed in ``spec.skipped`` too and not read,
    unless ``allow_outside=True`` (recipe: ``data.allow_outside: true``): a CSV from someone
    else cannot make kerasclf read files elsewhere on the machine. With ``multilabel=True`` (or ``label_columns``)
    this is :func:`from_csv_multilabel`.

    Args:
        csv_path: the CSV file (comma, semicolon or tab separated, with a header).
        path_column: column holding the image path.
        label_column: column holding the class name.
        root: folder that relative paths are relative to.
        group_column: column of group ids (default: ``group`` if present).
        split_column: column of ``train``/``val``/``test`` (default: ``split`` if present).
        class_names: the class order (default: sorted names found).
        multilabel, label_columns, separator: see :func:`from_csv_multilabel`.
        allow_outside: read listed files outside ``root`` too.

    Returns:
        A :class:`DataSpec`.

    Example:
        >>> spec = from_csv("labels.csv", root="images/")  # doctest: +SKIP
    """
    if multilabel or label_columns is not None:
        return from_csv_multilabel(csv_path, path_column=path_column, label_columns=label_columns,
                                   labels_column=label_column if label_columns is None else "labels",
                                   separator=separator, root=root, group_column=group_column,
                                   split_column=split_column, class_names=class_names,
                                   allow_outside=allow_outside)
    csv_path = os.fspath(csv_path)
    header, rows = _read_csv(csv_path)
    _need_cols(csv_path, header, [path_column, label_column])
    base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(csv_path))
    keep, skipped = _existing(rows, path_column, base, csv_path, allow_outside)
    names = [r[label_column] for r in keep]
    if class_names is None:
        class_names = sorted(set(names))
    index = {str(c): i for i, c in enumerate(class_names)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DataError(f"{csv_path}: labels {', '.join(unknown[:10])} are not in class_names")
    return DataSpec(class_names=[str(c) for c in class_names],
                    labels=np.array([index[n] for n in names], dtype=int),
                    paths=[_resolve(r[path_column], base) for r in keep],
                    task=infer_task(len(class_names)), source=f"csv {csv_path}", skipped=skipped,
                    groups=_opt_col(keep, header, group_column, "group"),
                    preset_split=_split_col(csv_path, keep, header, split_column))


def _existing(rows: list[dict[str, str]], path_column: str, base: str, csv_path: str,
              allow_outside: bool = False) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    keep, skipped = [], []
    for r in rows:
        p = r.get(path_column, "")
        full = _resolve(p, base)
        if p and not allow_outside and not _inside(full, base):
            skipped.append((full, f"listed in {csv_path} but outside the data folder {base}; "
                                  f"not read (allow_outside=True / data.allow_outside: true reads it)"))
        elif p and os.path.isfile(full):
            keep.append(r)
        else:
            skipped.append((full or "<empty>", f"listed in {csv_path} but not found"))
    if not keep:
        outside = sum("outside the data folder" in why for _, why in skipped)
        if outside:
            raise DataError(f"{csv_path}: {outside} of its {len(rows)} files lie outside {base} and none inside; "
                            f"set root to their folder, or allow_outside=True if you trust this CSV")
        raise DataError(f"{csv_path}: none of the {len(rows)} listed files exist under {base}; "
                        f"set root to the folder the paths are relative to")
    return keep, skipped


def _opt_col(rows: list[dict[str, str]], header: list[str], col: str | None, default: str) -> np.ndarray | None:
    name = col or (default if default in header else None)
    if name is None:
        return None
    if name not in header:
        raise DataError(f"no column {name!r} (columns: {', '.join(header)})")
    return np.array([r[name] for r in rows], dtype=object)


def _split_col(csv_path: str, rows: list[dict[str, str]], header: list[str], col: str | None) -> np.ndarray | None:
    vals = _opt_col(rows, header, col, "split")
    if vals is None:
        return None
    out = []
    for v in vals:
        s = SPLIT_ALIASES.get(str(v).lower())
        if s is None:
            raise DataError(f"{csv_path}: split value {v!r} is not one of train/val/test")
        out.append(s)
    return np.array(out, dtype=object)


def from_csv_multilabel(csv_path: str | os.PathLike, *, path_column: str = "path",
                        label_columns: Sequence[str] | None = None, labels_column: str = "labels",
                        separator: str = r"[|\s]+", root: str | os.PathLike | None = None,
                        group_column: str | None = None, split_column: str | None = None,
                        class_names: Sequence[str] | None = None, allow_outside: bool = False) -> DataSpec:
    """A multi-label CSV: several 0/1 (or -1/1) columns, or one column of names joined by ``|``/spaces.

    Args:
        csv_path: the CSV file.
        path_column: column holding the image path.
        label_columns: the 0/1 attribute columns; ``None`` uses ``labels_column`` if the CSV has
            it, else every column except path/group/split.
        labels_column: a column of label names separated by ``separator`` (``"cat|outdoor"``).
        separator: regular expression splitting ``labels_column``.
        root, group_column, split_column, class_names, allow_outside: as in :func:`from_csv`.

    Returns:
        A :class:`DataSpec` with task ``multilabel`` and a 0/1 label matrix ``(N, K)``.

    Example:
        >>> spec = from_csv_multilabel("tags.csv", labels_column="tags")  # doctest: +SKIP
    """
    csv_path = os.fspath(csv_path)
    header, rows = _read_csv(csv_path)
    _need_cols(csv_path, header, [path_column])
    base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(csv_path))
    keep, skipped = _existing(rows, path_column, base, csv_path, allow_outside)
    if label_columns is None and labels_column in header:
        sets = [[t for t in re.split(separator, r[labels_column].strip()) if t] for r in keep]
        names = list(class_names) if class_names else sorted({t for s in sets for t in s})
        index = {c: i for i, c in enumerate(names)}
        labels = np.zeros((len(keep), len(names)), dtype=int)
        for i, s in enumerate(sets):
            for t in s:
                if t not in index:
                    raise DataError(f"{csv_path}: label {t!r} is not in class_names")
                labels[i, index[t]] = 1
    else:
        reserved = {path_column, group_column or "group", split_column or "split"}
        names = list(label_columns) if label_columns else [h for h in header if h not in reserved]
        _need_cols(csv_path, header, names)
        try:
            raw = np.array([[float(r[c]) for c in names] for r in keep])
        except ValueError:
            raise DataError(f"{csv_path}: label columns must hold 0/1 or -1/1 numbers "
                            f"({', '.join(names[:8])})") from None
        labels = (raw > 0).astype(int)
    return DataSpec(class_names=[str(n) for n in names], labels=labels,
                    paths=[_resolve(r[path_column], base) for r in keep], task="multilabel",
                    source=f"csv {csv_path}", skipped=skipped,
                    groups=_opt_col(keep, header, group_column, "group"),
                    preset_split=_split_col(csv_path, keep, header, split_column))


# ----------------------------------------------------------------------------- CelebA
def _read_celeba_attrs(attr_file: str, max_rows: int | None) -> tuple[list[str], list[str], np.ndarray]:
    if not os.path.isfile(attr_file):
        raise DataError(f"{attr_file}: no such attribute file; give CelebA's list_attr_celeba.txt")
    with open(attr_file, encoding="utf-8") as f:
        first = f.readline().strip()
        names = f.readline().split()
        if not first.isdigit() or not names:
            raise DataError(f"{attr_file}: not in list_attr_celeba.txt format (line 1: the count; "
                            f"line 2: attribute names; then 'file v1 ... vK' with -1/1)")
        files, values = [], []
        for n, line in enumerate(f, start=3):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(names) + 1:
                raise DataError(f"{attr_file}:{n}: expected a file name and {len(names)} values, "
                                f"got {len(parts)} fields")
            files.append(parts[0])
            values.append(parts[1:])
            if max_rows and len(files) >= max_rows:
                break
    try:
        arr = (np.array(values, dtype=np.int8) > 0).astype(np.int8) if values else np.zeros((0, len(names)), np.int8)
    except ValueError:
        raise DataError(f"{attr_file}: attribute values must be -1 or 1") from None
    return names, files, arr


def _read_pairs(path: str, what: str) -> dict[str, str]:
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such {what} file")
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = parts[1]
    return out


def from_celeba(attr_file: str | os.PathLike, image_dir: str | os.PathLike | None = None, *,
                attributes: Sequence[str] | int | str | None = None, identity_file: str | None = None,
                partition_file: str | None = None, max_rows: int | None = None) -> DataSpec:
    """CelebA-style attribute table (``list_attr_celeba.txt``) as a multi-label source.

    The file's first line is the image count, the second the attribute names, then one line
    per image: ``000001.jpg -1 1 ...``; -1/1 become 0/1. Only rows whose image exists in
    ``image_dir`` are kept (the released attribute file lists 202,599 images; a partial download
    is fine).

    Args:
        attr_file: the attribute file.
        image_dir: folder of the images (default: ``img_align_celeba`` beside the file).
        attributes: ``None`` for all; a list of names; ``"seed32"`` for :data:`CELEBA_SEED_32`;
            or an int ``n`` for the ``n`` most balanced attributes (positive rate closest to
            50 % over the kept rows; ties in file order).
        identity_file: optional ``identity_CelebA.txt`` (``file person_id``): sets ``groups`` so
            that one person never crosses splits.
        partition_file: optional ``list_eval_partition.txt`` (0/1/2 = train/val/test):
            sets ``preset_split``.
        max_rows: read only the first rows of the attribute file.

    Returns:
        A :class:`DataSpec` with task ``multilabel``.

    Example:
        >>> spec = from_celeba("celeba/list_attr_celeba.txt", "celeba/img_align_celeba",
        ...                    attributes="seed32")  # doctest: +SKIP
        >>> spec.labels.shape[1]  # doctest: +SKIP
        32
    """
    attr_file = os.fspath(attr_file)
    if os.path.isdir(attr_file):
        attr_file = os.path.join(attr_file, "list_attr_celeba.txt")
    image_dir = _check_dir(image_dir if image_dir is not None
                           else os.path.join(os.path.dirname(attr_file), "img_align_celeba"), "image folder")
    names, files, values = _read_celeba_attrs(attr_file, max_rows)
    present = set(os.listdir(image_dir))
    mask = np.array([f in present for f in files], dtype=bool)
    if not mask.any():
        raise DataError(f"{attr_file}: none of its {len(files)} images are in {image_dir}; "
                        f"check image_dir")
    files = [f for f, m in zip(files, mask) if m]
    values = values[mask]
    if attributes is None:
        chosen = list(names)
    elif isinstance(attributes, str):
        if attributes.lower() not in ("seed32", "seed_32"):
            attributes = [attributes]
            chosen = list(attributes)
        else:
            chosen = list(CELEBA_SEED_32)
    elif isinstance(attributes, (int, np.integer)) and not isinstance(attributes, bool):
        if not 1 <= attributes <= len(names):
            raise ConfigError(f"attributes={attributes}: choose between 1 and {len(names)}")
        balance = np.abs(values.mean(axis=0) - 0.5)
        order = sorted(range(len(names)), key=lambda i: (balance[i], i))[:attributes]
        chosen = [names[i] for i in sorted(order)]
    else:
        chosen = list(attributes)
    unknown = [a for a in chosen if a not in names]
    if unknown:
        raise UnknownNameError("CelebA attribute", unknown[0], names)
    cols = [names.index(a) for a in chosen]
    groups = preset = None
    if identity_file:
        ids = _read_pairs(identity_file, "identity")
        groups = np.array([ids.get(f, f"?{f}") for f in files], dtype=object)
    if partition_file:
        part = _read_pairs(partition_file, "partition")
        preset = np.array([{"0": "train", "1": "val", "2": "test"}.get(part.get(f, "0"), "train")
                           for f in files], dtype=object)
    return DataSpec(class_names=chosen, labels=values[:, cols].astype(int),
                    paths=[os.path.join(image_dir, f) for f in files], task="multilabel",
                    groups=groups, preset_split=preset, source=f"celeba {attr_file}")


# ----------------------------------------------------------------------------- TFDS
def from_tfds(name: str, *, split: str = "train", data_dir: str | None = None, image_key: str = "image",
              label_key: str = "label", download: bool = True, max_examples: int | None = None,
              resize_to: Sequence[int] | None = None) -> DataSpec:
    """A TensorFlow Datasets image dataset by name, read into memory as uint8 arrays.

    Uses ``tfds.builder(name, data_dir=...)`` and ``as_dataset`` (real TFDS code; tests run it
    under ``tfds.testing.mock_data``). The data is materialised eagerly into ``spec.images``
    (simple and fast for CIFAR-sized sets; use ``max_examples`` or a folder source for big ones).
    Images of different sizes (``cats_vs_dogs``) are resized to ``resize_to`` (default: the first
    image's size). A ``label_key`` feature that is a dict of booleans (``celeb_a``'s
    ``attributes``) gives a multi-label spec.

    Args:
        name: TFDS name, e.g. ``cifar100`` or ``cats_vs_dogs``.
        split: TFDS split expression (``train``, ``test``, ``train[:10%]`` ...).
        data_dir: TFDS data folder (default: TFDS's own).
        image_key, label_key: feature names.
        download: let TFDS download and prepare the data if it is not there.
        max_examples: stop after this many examples.
        resize_to: ``(H, W)`` for datasets whose images differ in size.

    Returns:
        A :class:`DataSpec` of arrays.

    Example:
        >>> spec = from_tfds("cifar100", split="test[:500]")  # doctest: +SKIP
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover
        raise ConfigError(f"source tfds needs tensorflow-datasets ({e}); pip install tensorflow-datasets") from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - tfds raises its own DatasetNotFoundError
        raise DataError(f"tfds dataset {name!r}: {str(e).splitlines()[0]}") from None
    try:
        if download:
            builder.download_and_prepare()
        ds = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"tfds dataset {name!r} split {split!r}: {str(e).splitlines()[0]} "
                        f"(offline? pass data_dir to prepared data)") from None
    feats = builder.info.features
    if image_key not in feats or label_key not in feats:
        raise ConfigError(f"tfds {name}: features are {', '.join(feats.keys())}; "
                          f"set image_key/label_key to those")
    label_feat = feats[label_key]
    multilabel = hasattr(label_feat, "keys") and not hasattr(label_feat, "names")
    if multilabel:
        class_names = sorted(label_feat.keys())
    else:
        class_names = list(getattr(label_feat, "names", []) or [])
    images, labels = [], []
    for ex in tfds.as_numpy(ds):
        img = np.asarray(ex[image_key])
        lab = ex[label_key]
        labels.append([int(bool(lab[k])) for k in class_names] if multilabel else int(lab))
        images.append(img if img.ndim == 3 else img[..., None])
        if max_examples and len(images) >= max_examples:
            break
    if not images:
        raise DataError(f"tfds {name} split {split!r}: no examples")
    shapes = {im.shape for im in images}
    if len(shapes) > 1 or resize_to is not None:
        h, w = (tuple(resize_to) if resize_to is not None else images[0].shape[:2])
        images = [np.asarray(Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im).resize((w, h)))
                  for im in images]
        images = [im[..., None] if im.ndim == 2 else im for im in images]
    arr = np.stack(images).astype(np.uint8)
    labels_arr = np.asarray(labels, dtype=int)
    if not class_names:
        class_names = [str(i) for i in range(int(labels_arr.max()) + 1)]
    return DataSpec(class_names=class_names, labels=labels_arr, images=arr,
                    task=infer_task(len(class_names), multilabel), source=f"tfds {name}[{split}]")


# ----------------------------------------------------------------------------- keras.datasets
def from_keras_dataset(name: str, *, label_mode: str = "fine") -> DataSpec:
    """A ``keras.datasets`` image set: train and test parts together, with class names.

    ``preset_split`` marks the dataset's own parts: ``"train"`` for the training part (which
    :func:`kerasclf.data.splits.split_indices` divides further into train and val by the
    ratios) and ``"test"`` for the official test part, used as the test split unchanged.

    Args:
        name: ``cifar10``, ``cifar100``, ``mnist`` or ``fashion_mnist``.
        label_mode: for ``cifar100``: ``fine`` (100 classes) or ``coarse`` (20).

    Returns:
        A :class:`DataSpec` of uint8 arrays (grayscale sets have one channel).

    Example:
        >>> spec = from_keras_dataset("fashion_mnist")  # doctest: +SKIP
        >>> spec.class_names[:2]  # doctest: +SKIP
        ['T-shirt/top', 'Trouser']
    """
    key = name.lower().replace("-", "_")
    loaders: dict[str, Callable[[], Any]] = {
        "cifar10": keras.datasets.cifar10.load_data,
        "cifar100": lambda: keras.datasets.cifar100.load_data(label_mode=label_mode),
        "mnist": keras.datasets.mnist.load_data,
        "fashion_mnist": keras.datasets.fashion_mnist.load_data,
    }
    if key not in loaders:
        raise UnknownNameError("keras dataset", name, loaders)
    if key == "cifar100" and label_mode not in ("fine", "coarse"):
        raise ConfigError(f"label_mode {label_mode!r}: use 'fine' or 'coarse'")
    try:
        (x_tr, y_tr), (x_te, y_te) = loaders[key]()
    except Exception as e:  # noqa: BLE001 - network / missing cache
        raise DataError(f"keras.datasets.{key}: could not load ({str(e).splitlines()[0][:200]}); "
                        f"offline, put its files in $KERAS_HOME/datasets/") from None
    names = KERAS_CLASS_NAMES["cifar100_coarse" if key == "cifar100" and label_mode == "coarse" else key]
    images = np.concatenate([x_tr, x_te])
    if images.ndim == 3:
        images = images[..., None]
    labels = np.concatenate([np.asarray(y_tr).reshape(-1), np.asarray(y_te).reshape(-1)]).astype(int)
    preset = np.array(["train"] * len(x_tr) + ["test"] * len(x_te), dtype=object)
    return DataSpec(class_names=list(names), labels=labels, images=images.astype(np.uint8),
                    task="multiclass", preset_split=preset, source=f"keras.datasets.{key}")


# ----------------------------------------------------------------------------- arrays
def from_arrays(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None,
                task: str | None = None) -> DataSpec:
    """Numpy images ``(N, H, W[, C])`` and labels (see :meth:`DataSpec.from_arrays`).

    Example:
        >>> spec = from_arrays(np.zeros((6, 8, 8), "uint8"), [0, 1, 2, 0, 1, 2])
        >>> spec.task, spec.images.shape
        ('multiclass', (6, 8, 8, 1))
    """
    return DataSpec.from_arrays(np.asarray(images), np.asarray(labels),
                                class_names=list(class_names) if class_names is not None else None,
                                task=task)  # type: ignore[arg-type]


def from_npz(path: str | os.PathLike, *, images_key: str | None = None, labels_key: str | None = None,
             class_names_key: str | None = None) -> DataSpec:
    """Arrays saved with ``np.savez``: ``x``/``images`` + ``y``/``labels``, or ``x_train``/``y_train``
    plus ``x_test``/``y_test`` (then ``preset_split`` marks them).

    Class names come from ``class_names_key`` or the first of ``class_names``/``label_names``/
    ``fine_label_names`` present. ``y_train_fine``-style keys are found too.

    Example:
        >>> spec = from_npz("../shared/assets/cifar/cifar10_subset.npz")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such .npz file")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    keys = set(z.files)

    def pick(explicit: str | None, options: Sequence[str], what: str, required: bool = True) -> str | None:
        if explicit:
            if explicit not in keys:
                raise DataError(f"{path}: no array {explicit!r} (arrays: {', '.join(sorted(keys))})")
            return explicit
        for o in options:
            if o in keys:
                return o
        if required:
            raise DataError(f"{path}: no {what} array (arrays: {', '.join(sorted(keys))}); "
                            f"set {what}_key")
        return None

    preset = None
    if images_key is None and "x_train" in keys:
        ytr = pick(labels_key, ["y_train", "y_train_fine", "labels_train"], "labels")
        yte = ytr.replace("train", "test")
        x = np.concatenate([z["x_train"], z["x_test"]]) if "x_test" in keys and yte in keys else z["x_train"]
        y = np.concatenate([z[ytr], z[yte]]) if x.shape[0] != len(z["x_train"]) else z[ytr]
        preset = np.array(["train"] * len(z["x_train"]) + ["test"] * (len(x) - len(z["x_train"])), dtype=object)
    else:
        x = z[pick(images_key, ["images", "x", "X"], "images")]
        y = z[pick(labels_key, ["labels", "y", "Y"], "labels")]
    ck = pick(class_names_key, ["class_names", "label_names", "fine_label_names"], "class_names", False)
    names = [str(s) for s in z[ck]] if ck else None
    spec = DataSpec.from_arrays(x, y.reshape(len(y), -1) if y.ndim > 1 else y, class_names=names,
                                source=f"npz {path}")
    spec.preset_split = preset
    return spec


def digits() -> DataSpec:
    """scikit-learn's bundled handwritten digits: 1,797 real 8×8 images, 10 classes, offline.

    Values 0..16 are scaled to 0..255 uint8, one channel; the pipeline upsamples to the model's
    size and repeats the channel to RGB.

    Example:
        >>> spec = digits()
        >>> spec.images.shape, spec.images.dtype, int(spec.images.max())
        ((1797, 8, 8, 1), dtype('uint8'), 255)
    """
    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    return DataSpec(class_names=[str(i) for i in range(10)], labels=d.target.astype(int), images=images,
                    task="multiclass", source="sklearn digits")


# ----------------------------------------------------------------------------- dispatch
SOURCES: dict[str, Callable[..., DataSpec]] = {
    "folder": from_folder, "flat": from_flat, "csv": from_csv, "csv_multilabel": from_csv_multilabel,
    "celeba": from_celeba, "tfds": from_tfds, "keras": from_keras_dataset, "digits": digits,
    "npz": from_npz, "unlabelled": from_unlabelled,
}
_FIRST_ALIASES = {"path", "csv", "file"}  # accepted for a source's first positional argument


def load(config: dict[str, Any]) -> DataSpec:
    """Build a :class:`DataSpec` from a recipe's ``data`` section: ``{"source": ..., **options}``.

    Every key but ``source`` must be an option of the chosen source (see the module docstring);
    the pipeline keys of a recipe (``image_size``, ``batch_size`` ...) belong to
    :class:`kerasclf.train.recipe.DataCfg`, which passes only the source's options here. ``path`` is accepted for the first argument of every
    source that takes one (``csv_path``, ``attr_file``).

    Raises:
        UnknownNameError: unknown source.
        ConfigError: an option the source does not take (the message names it) or a missing one.

    Example:
        >>> load({"source": "digits"}).num_classes
        10
        >>> load({"source": "digits", "colour": 1})
        Traceback (most recent call last):
        ...
        kerasclf.errors.ConfigError: data source 'digits' has no option 'colour' (options: none)
    """
    if not isinstance(config, dict):
        raise ConfigError(f"data must be a mapping with a 'source' key, got {type(config).__name__}")
    # an option set to null (`--set data.name=null`) means "not given"
    cfg = {k: v for k, v in config.items() if v is not None}
    name = str(cfg.pop("source", "folder"))
    if name in ("keras_datasets", "keras.datasets"):
        name = "keras"
    if name not in SOURCES:
        raise UnknownNameError("data source", name, SOURCES)
    fn = SOURCES[name]
    params = inspect.signature(fn).parameters
    positional = [p for p, v in params.items() if v.kind == v.POSITIONAL_OR_KEYWORD]
    for alias in _FIRST_ALIASES:
        if alias in cfg and alias not in params and positional:
            if positional[0] in cfg:
                raise ConfigError(f"data source '{name}': give {positional[0]!r} or {alias!r}, not both")
            cfg[positional[0]] = cfg.pop(alias)
    for k in cfg:
        if k not in params:
            raise ConfigError(f"data source '{name}' has no option '{k}' "
                              f"(options: {', '.join(params) or 'none'})")
    missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty and p not in cfg]
    if missing:
        raise ConfigError(f"data source '{name}' needs option '{missing[0]}': pass --set data.{missing[0]}=... "
                          f"or set data.{missing[0]} in the recipe")
    for k in ("image_size", "resize_to"):
        if isinstance(cfg.get(k), list):
            cfg[k] = tuple(cfg[k])
    if name in ("folder", "flat", "npz", "unlabelled") and "path" in cfg:
        cfg["path"] = os.path.expanduser(str(cfg["path"]))
    return fn(**cfg)
