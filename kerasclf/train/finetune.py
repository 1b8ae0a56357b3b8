"""Stage 2 of transfer learning, by layer groups: which backbone layers train, in how many groups
(stem to head), the LR factor of each group (discriminative LRs) and the order in which gradual
unfreezing opens them. The backbone is always called in inference mode (zoo/transfer.py), so its
batch-norm statistics never move; ``freeze_bn`` also keeps their scale and offset fixed.

Example:
    >>> groups = unfreeze_groups(model, FineTuneCfg(unfreeze=True, groups=3))   # doctest: +SKIP
    >>> factors = lr_factors(groups, 0.3)                                        # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from kerasclf.errors import ConfigError
from kerasclf.train.recipe import FineTuneCfg
from kerasclf.zoo import set_backbone_trainable

__all__ = ["unfreeze_groups", "open_groups", "BACKBONE"]

BACKBONE = "backbone"


def _weighted(layers: list[Any]) -> list[Any]:
    return [layer for layer in layers if layer.weights]


def unfreeze_groups(model: keras.Model, ft: FineTuneCfg) -> list[list[Any]]:
    """Unfreeze the backbone as ``ft.unfreeze`` says and split the unfrozen layers into ``ft.groups``
    groups, stem to head; the head's layers join the last group. Returns the groups.

    Raises:
        ConfigError: the model has no backbone, or fewer unfrozen layers than groups.
    """
    names = [layer.name for layer in model.layers]
    if BACKBONE not in names:
        raise ConfigError(f"train.fine_tune: model '{model.name}' has no pretrained backbone to unfreeze, so "
                          f"there are no layer groups for lr_decay / gradual; remove train.fine_tune or "
                          f"use a transfer model")
    set_backbone_trainable(model, ft.unfreeze)
    backbone = model.get_layer(BACKBONE)
    first = next((i for i, layer in enumerate(backbone.layers) if layer.trainable and layer.weights), None)
    for i, layer in enumerate(backbone.layers):
        if isinstance(layer, keras.layers.BatchNormalization):  # inference mode always; freeze_bn: weights too
            layer.trainable = not ft.freeze_bn and first is not None and i >= first
    unfrozen = [layer for layer in _weighted(backbone.layers) if layer.trainable
                and not isinstance(layer, keras.layers.BatchNormalization)]
    if len(unfrozen) < ft.groups:
        raise ConfigError(f"train.fine_tune.groups={ft.groups} but only {len(unfrozen)} backbone layers are "
                          f"unfrozen (unfreeze: {ft.unfreeze!r}); unfreeze more layers or use fewer groups")
    bn = [layer for layer in _weighted(backbone.layers) if layer.trainable
          and isinstance(layer, keras.layers.BatchNormalization)]
    order = {id(layer): i for i, layer in enumerate(backbone.layers)}
    groups = [list(chunk) for chunk in np.array_split(np.array(unfrozen, dtype=object), ft.groups)]
    for layer in bn:  # a trainable batch norm trains with the group of the layer before it
        i = order[id(layer)]
        g = max((k for k, group in enumerate(groups) if order[id(group[0])] <= i), default=0)
        groups[g].append(layer)
    head = [layer for layer in _weighted(model.layers[names.index(BACKBONE) + 1:])]
    groups[-1].extend(head)
    return groups


def open_groups(model: keras.Model, groups: list[list[Any]], n_open: int) -> None:
    """Gradual unfreezing: only the last ``n_open`` groups (head side) train.

    Example:
        >>> a, b = keras.layers.Dense(2), keras.layers.Dense(2)
        >>> open_groups(None, [[a], [b]], 1); a.trainable, b.trainable
        (False, True)
    """
    for k, group in enumerate(groups):
        for layer in group:
            layer.trainable = k >= len(groups) - n_open
