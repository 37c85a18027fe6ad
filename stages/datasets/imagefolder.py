"""Any data set in torchvision's ImageFolder layout, one folder per split: root/<split>/<class>/*.jpg.

Class names are the split's sorted folder names, "_" read as a space (so that "snow_owl" prompts as
"snow owl"); labels index them, so every split of a data set must hold the same class folders (a
folder may be empty). The synthetic world's source task and its shifted sets are written this way
(stages.synthetic.source: source/{train,val}, v2/test, sketch/test, rendition/test, hard/test,
scenes/test).
"""

from __future__ import annotations

from pathlib import Path

from .base import ClassificationSet, DatasetLayoutError, ImageList, check_split, missing, scan, subfolders

SPLITS = ("train", "val", "test")
LAYOUT_URL = "https://pytorch.org/vision/stable/generated/torchvision.datasets.ImageFolder.html (the layout)"
TEMPLATES = ["a photo of a {}.", "This is a picture of a {}."]


def classnames_of(folders: list[str]) -> list[str]:
    """Class names of class folders: each name with "_" read as a space."""
    return [f.replace("_", " ") for f in folders]


def open_imagefolder(root, split, transform=None) -> ClassificationSet:
    """One split of an ImageFolder tree, root/<split>/<class>/*.jpg: labels index the sorted class
    folders. Raises DatasetMissing or DatasetLayoutError naming the folder."""
    check_split("imagefolder", split, SPLITS)
    root = Path(root)
    if not root.is_dir():
        raise missing(root, f"an ImageFolder tree ({'/'.join(SPLITS)}/<class>/*.jpg; "
                      "python -m stages.synthetic.source writes the synthetic world's)", LAYOUT_URL)
    folder = root / split
    if not folder.is_dir():
        raise missing(folder, f"the {split} split, one folder per class ({split}/<class>/*.jpg)", LAYOUT_URL)
    folders = subfolders(folder)
    if not folders:
        raise DatasetLayoutError(f"{folder}: no class folders; expected {split}/<class>/*.jpg")
    samples = scan(folder, {f: i for i, f in enumerate(folders)}, "class")
    return ClassificationSet(
        name="imagefolder", root=folder, split=split,
        dataset=ImageList([(p, y, -1) for p, y in samples], transform),
        classnames=classnames_of(folders), templates=list(TEMPLATES))
