"""ImageNet (ILSVRC-2012) and its shifts, all read into ImageNet's label space.

Labels are indices into the 1000 sorted WordNet ids (the order every ImageNet classifier and
open_clip's class names use). The wnid list comes from timm (a dependency of open_clip), as do
the 200-class lists of ImageNet-R and -A; class names and the 80 OpenAI templates from open_clip.
"""

from __future__ import annotations

import functools
import pkgutil
from pathlib import Path

import open_clip
from timm.data import ImageNetInfo

from .base import (ClassificationSet, DatasetLayoutError, ImageList, check_folders, check_split,
                   format_templates, require_dir, scan, subfolders)

IMAGENET_URL = "https://image-net.org (ILSVRC-2012)"
SPLITS = ("train", "val")
TEST_ONLY = ("test",)  # the shifts are evaluation sets: one split, all of their images


@functools.cache
def wnids() -> tuple[str, ...]:
    """ImageNet's 1000 WordNet ids, sorted (label i is wnid i), from timm."""
    ids = tuple(ImageNetInfo("imagenet-1k").label_names())
    # sorted order is the definition of the labels; a reordered list would silently relabel
    assert len(ids) == 1000 and list(ids) == sorted(ids), "timm's ImageNet synset list changed"
    return ids


@functools.cache
def timm_subset(name: str) -> tuple[str, ...]:
    """The wnids of an ImageNet subset that timm ships ('imagenet_r', 'imagenet_a')."""
    text = pkgutil.get_data("timm.data", f"_info/{name}_synsets.txt").decode()
    return tuple(sorted(text.split()))


def classnames() -> list[str]:
    """open_clip's 1000 ImageNet class names, in label order."""
    return list(open_clip.IMAGENET_CLASSNAMES)


def templates() -> list[str]:
    """The 80 OpenAI ImageNet templates as "{}" strings."""
    return format_templates(open_clip.OPENAI_IMAGENET_TEMPLATES)


def _wnid_folders(name: str, root: Path, split: str, transform, expected: tuple[str, ...],
                  class_subset: bool) -> ClassificationSet:
    check_folders(root, subfolders(root), expected, f"{name} wnid")
    index = {w: i for i, w in enumerate(wnids())}
    samples = scan(root, {w: index[w] for w in expected}, "wnid")
    return ClassificationSet(
        name=name, root=root, split=split,
        dataset=ImageList([(p, y, -1) for p, y in samples], transform),
        classnames=classnames(), templates=templates(),
        class_subset=sorted(index[w] for w in expected) if class_subset else None)


def open_imagenet(root, split, transform=None) -> ClassificationSet:
    """ILSVRC-2012 as extracted for PyTorch: root/{train,val}/<wnid>/*.JPEG (val sorted into
    wnid folders, e.g. by the usual valprep.sh)."""
    check_split("imagenet", split, SPLITS)
    folder = require_dir(Path(root) / split,
                         f"ILSVRC-2012's {split}/ folder (one folder per wnid, 1000 folders)",
                         IMAGENET_URL)
    if not subfolders(folder) and any(folder.iterdir()):
        raise DatasetLayoutError(
            f"{folder}: images but no wnid folders: ILSVRC-2012's val tar extracts flat; sort the "
            "images into one folder per wnid (e.g. with the devkit's labels, as "
            "torchvision.datasets.ImageNet does)")
    return _wnid_folders("imagenet", folder, split, transform, wnids(), class_subset=False)


def _wnid_test_set(name: str, what: str, url: str, classes):
    """The reader of a test-only set stored as one folder per wnid under `root`. `classes()` gives
    its wnids; a set of fewer than ImageNet's 1000 (R, A) restricts the logits to them."""
    def open_set(root, split, transform=None) -> ClassificationSet:
        check_split(name, split, TEST_ONLY)
        folder = require_dir(Path(root), what, url)
        expected = classes()
        return _wnid_folders(name, folder, split, transform, expected, class_subset=len(expected) < len(wnids()))
    open_set.__name__ = f"open_{name}"
    return open_set


open_sketch = _wnid_test_set("imagenet_sketch", "ImageNet-Sketch's sketch/ folder (1000 wnid folders)",
                             "https://github.com/HaohanWang/ImageNet-Sketch", wnids)
open_r = _wnid_test_set("imagenet_r", "the extracted imagenet-r/ folder (200 wnid folders)",
                        "https://github.com/hendrycks/imagenet-r", lambda: timm_subset("imagenet_r"))
open_a = _wnid_test_set("imagenet_a", "the extracted imagenet-a/ folder (200 wnid folders)",
                        "https://github.com/hendrycks/natural-adv-examples", lambda: timm_subset("imagenet_a"))


def open_v2(root, split, transform=None) -> ClassificationSet:
    """ImageNetV2 matched-frequency: folders 0 ... 999, the folder name is the label."""
    check_split("imagenet_v2", split, TEST_ONLY)
    folder = require_dir(Path(root), "the extracted imagenetv2-matched-frequency-format-val/ "
                         "folder (folders 0 ... 999)", "https://github.com/modestyachts/ImageNetV2")
    expected = [str(i) for i in range(1000)]
    check_folders(folder, subfolders(folder), expected, "class (0 ... 999)")
    samples = scan(folder, {str(i): i for i in range(1000)}, "class")
    return ClassificationSet(
        name="imagenet_v2", root=folder, split=split,
        dataset=ImageList([(p, y, -1) for p, y in samples], transform),
        classnames=classnames(), templates=templates())


__all__ = ["open_imagenet", "open_sketch", "open_r", "open_a", "open_v2", "wnids",
           "templates", "classnames"]
