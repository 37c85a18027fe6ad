"""The reader of each published layout, the splits each accepts and evaluates, and the class names
and prompt templates each knows without its data.

Adding a data set is one module with an `open_<name>(root, split, transform=None)` and one line
in each of READERS, SPLITS, EVAL_SPLITS, STATIC_CLASSNAMES and STATIC_TEMPLATES.
"""

from __future__ import annotations

from typing import Callable

from .base import ClassificationSet
from . import celeba, imagefolder, imagenet, objectnet, transfer, waterbirds

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
    "imagefolder": imagefolder.open_imagefolder,
}

# every split a reader accepts, in order
SPLITS: dict[str, list[str]] = {
    "imagenet": list(imagenet.SPLITS),
    **{r: list(imagenet.TEST_ONLY) for r in ("imagenet_v2", "imagenet_sketch", "imagenet_r",
                                            "imagenet_a", "objectnet")},
    "waterbirds": list(waterbirds.SPLITS),
    "celeba": list(celeba.SPLITS),
    "caltech101": list(transfer.CALTECH_SPLITS),
    "flowers102": list(transfer.FLOWERS_SPLITS),
    "stanford_cars": list(transfer.CARS_SPLITS),
    "sun397": list(transfer.SUN_SPLITS),
    "imagefolder": list(imagefolder.SPLITS),
}
# the splits evaluated unless the config names others: ImageNet's labelled val (its test labels are
# not public); the group sets' val and test, as the group-robustness papers report both
EVAL_SPLITS: dict[str, list[str]] = {
    **{r: ["test"] for r in SPLITS},
    "imagenet": ["val"], "waterbirds": ["val", "test"], "celeba": ["val", "test"],
}
# class names known without the data (config validation needs them before any job runs); None:
# only the data's folders or files name the classes
STATIC_CLASSNAMES: dict[str, Callable[[], list[str]] | None] = {
    **{r: imagenet.classnames for r in ("imagenet", "imagenet_v2", "imagenet_sketch",
                                        "imagenet_r", "imagenet_a", "objectnet")},
    "waterbirds": lambda: list(waterbirds.CLASSNAMES), "celeba": lambda: list(celeba.CLASSNAMES),
    # CLIP's published names (stages.datasets.published_prompts); the readers check the data's classes
    "caltech101": transfer.caltech_classnames, "flowers102": transfer.flowers_classnames,
    "stanford_cars": transfer.cars_classnames, "sun397": transfer.sun_classnames, "imagefolder": None,
}


# every reader's prompt templates are fixed: CLIP's (open_clip's 80 for the ImageNet family, equal to
# clip-benchmark's; clip-benchmark's for the four classification sets)
STATIC_TEMPLATES: dict[str, Callable[[], list[str]]] = {
    **{r: imagenet.templates for r in ("imagenet", "imagenet_v2", "imagenet_sketch",
                                       "imagenet_r", "imagenet_a", "objectnet")},
    "waterbirds": lambda: list(waterbirds.TEMPLATES), "celeba": lambda: list(celeba.TEMPLATES),
    "caltech101": lambda: list(transfer.CALTECH_TEMPLATES), "flowers102": lambda: list(transfer.FLOWERS_TEMPLATES),
    "stanford_cars": lambda: list(transfer.CARS_TEMPLATES), "sun397": lambda: list(transfer.SUN_TEMPLATES),
    "imagefolder": lambda: list(imagefolder.TEMPLATES),
}


def _known(kind: str) -> None:
    if kind not in READERS:
        raise ValueError(f"unknown data set kind {kind!r}; known: {', '.join(READERS)}")


def static_classnames(reader: str) -> list[str] | None:
    """The head's class names of a reader when they are known without its data, else None
    (ObjectNet: ImageNet's 1000, the head it is scored through)."""
    _known(reader)
    names = STATIC_CLASSNAMES[reader]
    return None if names is None else names()


def static_templates(reader: str) -> list[str]:
    """The prompt templates of a reader's zero-shot head."""
    _known(reader)
    return STATIC_TEMPLATES[reader]()


def open(kind: str, root, split: str, transform=None) -> ClassificationSet:
    """Open one split of a data set of the given kind (a key of READERS)."""
    _known(kind)
    return READERS[kind](root, split, transform)
