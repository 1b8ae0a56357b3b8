"""``python -m kerasclf.export.graph_ops [NAME ...]``: the TensorFlow ops in kerasclf's SavedModel
export of each zoo model, and any that the model gate's allowlist
(:mod:`kerasclf.security.allowlist`) does not list (exit 1).

This is how the TensorFlow allowlist was built and how it is checked when a zoo family is added.

Example:
    $ python -m kerasclf.export.graph_ops                      # every registered zoo family
    $ python -m kerasclf.export.graph_ops ConvNeXtTiny DenseNet121 --size 32
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras

from kerasclf.io import save_model
from kerasclf.security import savedmodel_op_types
from kerasclf.security.allowlist import TF_GRAPH_OPS, TF_SAVER_OPS
from kerasclf.zoo import build, get_cfg, list_models

__all__ = ["collect_export_ops", "main"]

#: keras.applications backbones that need inputs of at least 75 px
_MIN_75 = ("InceptionV3", "InceptionResNetV2", "Xception")


def collect_export_ops(names: Sequence[str] = (), *, size: int = 32) -> dict[str, set[str]]:
    """The op types of each model's SavedModel export (random weights, ``size`` px inputs), by name.

    Example:
        >>> ops = collect_export_ops(["simple_cnn"])                 # doctest: +SKIP
        >>> sorted(ops["simple_cnn"] - TF_GRAPH_OPS - TF_SAVER_OPS)     # doctest: +SKIP
        []
    """
    out: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list_models():
            side = max(size, 75) if name in _MIN_75 else size
            kw = {"weights": None} if get_cfg(name).pretrained else {}
            model = build(name, num_classes=3, input_shape=(side, side, 3), **kw)
            out[name] = savedmodel_op_types(save_model(model, Path(tmp) / name, overwrite=True))
            keras.backend.clear_session()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print each export's op types and the ones not on the allowlist; exit 1 if there are any."""
    parser = argparse.ArgumentParser(prog="python -m kerasclf.export.graph_ops", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="zoo or keras.applications names (default: every zoo family)")
    parser.add_argument("--size", type=int, default=32, help="input side in pixels (default 32)")
    args = parser.parse_args(argv)
    ops = collect_export_ops(args.names, size=args.size)
    for name, found in ops.items():
        print(f"{name}: {', '.join(sorted(found))}")
    union = set().union(*ops.values())
    missing = sorted(union - TF_GRAPH_OPS - TF_SAVER_OPS)
    print(f"\n{len(union)} op types in {len(ops)} exports; not on the allowlist: {', '.join(missing) or 'none'}")
    return 1 if missing else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
