"""Readers for the published on-disk layouts of the data sets the paper evaluates on.

    from stages import datasets
    ds = datasets.open("imagenet_r", "data/imagenet-r", "test", transform=preprocess)
    ds.dataset[0]        # (image, label, attribute or -1, index)
    ds.predict(logits)   # labels from head logits (restricted to ImageNet-R's 200 classes)

Opening checks the layout and raises DatasetLayoutError naming the folder. Adding a data set is
one module with an `open_<name>(root, split, transform=None)` and one line in READERS.
"""

from __future__ import annotations

from typing import Callable

from .base import ClassificationSet, DatasetLayoutError
from . import celeba, imagenet, objectnet, transfer, waterbirds

READERS: dict[str, Callable[..., ClassificationSet]] = {
    "imagenet": imagenet.open_imagenet,
    "imagenet_v2": imagenet.open_v2,
    "imagenet_sketch": imagenet.open_sketch,
    "imagenet_r": imagenet.open_r,
    "imagenet_a": imagenet.open_a,
    "objectnet": objectnet.open_objectnet,
    "waterbirds": waterbirds.open_waterbirds,
    "celeba": celeba.open_celeba,
    "caltech101": transfer.open_caltech101,
    "flowers102": transfer.open_flowers102,
    "stanford_cars": transfer.open_stanford_cars,
    "sun397": transfer.open_sun397,
}


def open(kind: str, root, split: str, transform=None) -> ClassificationSet:  # noqa: A001
    """Open one split of a data set of the given kind (a key of READERS)."""
    try:
        reader = READERS[kind]
    except KeyError:
        raise ValueError(f"unknown data set kind {kind!r}; known: {', '.join(READERS)}") from None
    return reader(root, split, transform)


__all__ = ["READERS", "ClassificationSet", "DatasetLayoutError", "open"]
