"""Any data set in torchvision's ImageFolder layout, one folder per split: root/<split>/<class>/*.jpg.

Labels index the split's sorted class folders, so every split of a data set must hold the same
class folders (a folder may be empty). Class names are the folder names, "_" read as a space (so
that "snow_owl" prompts as "snow owl"), unless the config gives them: `classnames`, a list that
must name the folders in their sorted order (`named_classes` checks it against the folders, so
that a list in another order cannot pair a folder with another class's name), or
`classnames_file`, a CSV of `folder,name` rows for names that differ from the folder names
(`read_class_map`). The synthetic world's source task and its shifted sets are written this way
(stages.synthetic.source: source/{train,val}, v2/test, sketch/test, rendition/test, hard/test,
scenes/test).
"""

from __future__ import annotations

import csv
from pathlib import Path

from .base import (ClassificationSet, DatasetConfigError, DatasetLayoutError, ImageList, check_split, missing, scan,
                   subfolders)

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


def folder_classnames(root, split: str) -> list[str]:
    """The class names of a tree's split without opening it: its sorted class folders' names, "_"
    read as a space. DatasetMissing naming the folder when the split is not there."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise missing(folder, f"the {split} split, one folder per class ({split}/<class>/*.jpg)", LAYOUT_URL)
    return classnames_of(subfolders(folder))


def read_class_map(path, key: str) -> dict[str, str]:
    """A `classnames_file` (config key `key`): a CSV with the header `folder,name` and one row per
    class folder, pairing it with its class name. DatasetConfigError naming the file (and row)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetConfigError(f"{key}: no file {path} (a CSV with the header folder,name, one row per class folder)")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ["folder", "name"]:
        raise DatasetConfigError(f"{key}: {path} must start with the header folder,name (got {rows[:1]})")
    mapping: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise DatasetConfigError(f"{key}: {path} line {line}: expected folder,name, got {row}")
        folder, name = row[0].strip(), row[1].strip()
        if folder in mapping:
            raise DatasetConfigError(f"{key}: {path} line {line}: folder {folder!r} is named twice")
        mapping[folder] = name
    if len(mapping) < 2:
        raise DatasetConfigError(f"{key}: {path} names {len(mapping)} class folder(s); a classifier needs two")
    return mapping


def mapped_classnames(mapping: dict[str, str]) -> list[str]:
    """The names of a `read_class_map` mapping in label order: that of the sorted folders."""
    return [mapping[f] for f in sorted(mapping)]


def _same_name(given: str, folder: str) -> bool:
    # "Blue jay" names folder "blue_jay": case, "_" and "-" aside, a listed name is the folder's
    def key(s: str) -> str:
        return " ".join(s.replace("_", " ").replace("-", " ").casefold().split())
    return key(given) == key(folder)


def named_classes(ds: ClassificationSet, name: str, given: list[str] | dict[str, str]) -> list[str]:
    """The class names of an opened split `ds` given the config's: a `classnames` list (it must
    name the split's class folders in their sorted order, the labels' order) or a
    `classnames_file` mapping (it must name every class folder and no other). DatasetConfigError,
    one line naming the key, the folder and the first mismatch."""
    folders = subfolders(ds.root)
    shown = ", ".join(folders[:4]) + (", ..." if len(folders) > 4 else "")
    if isinstance(given, dict):
        key = f"datasets.{name}.classnames_file"
        lost, extra = sorted(set(folders) - set(given)), sorted(set(given) - set(folders))
        if lost:
            raise DatasetConfigError(f"{key}: no name for the class folder(s) {lost[:3]} of {ds.root}")
        if extra:
            raise DatasetConfigError(f"{key}: names folder(s) {extra[:3]} that {ds.root} does not have ({shown})")
        return mapped_classnames(given)
    key = f"datasets.{name}.classnames"
    if len(given) != len(folders):
        raise DatasetConfigError(f"{key}: {len(given)} names for the {len(folders)} class folders of {ds.root} "
                                 f"({shown})")
    for label, (class_name, folder) in enumerate(zip(given, folders)):
        if not _same_name(class_name, folder):
            raise DatasetConfigError(
                f"{key}: name {class_name!r} (label {label}) is given for class folder {folder!r} of {ds.root}: "
                f"labels follow the sorted folders ({shown}); list the names in that order, or, where the "
                "names differ from the folder names, give classnames_file (a CSV of folder,name)")
    return list(given)
