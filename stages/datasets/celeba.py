"""CelebA as a group-shift target (Sagawa et al., 2020): label Blond_Hair, spurious attribute Male.

Layout as published (the "Align&Cropped" images and the annotation files side by side):
img_align_celeba/*.jpg, list_attr_celeba.txt (a count line, a header of 40 attribute names, then
"<file> <40 values of -1/1>"), list_eval_partition.txt ("<file> <0|1|2>" = train/val/test).
Four groups (base.group_index): dark hair female, dark hair male, blond female, blond male.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .base import ClassificationSet, DatasetLayoutError, ImageList, check_split, missing

URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
SPLITS = {"train": 0, "val": 1, "test": 2}
TARGET, SPURIOUS = "Blond_Hair", "Male"
# no negation: CLIP reads negations badly ("non-blond hair" shares its main words with "blond
# hair"), so the other class is named by what it shows
CLASSNAMES = ["dark hair", "blond hair"]
ATTRIBUTES = ["female", "male"]
# the four templates of the head, CLIP-style prompts about a person ("{}" is the hair phrase):
# "a photo of a person with {}.", "a photo of a celebrity with {}.", "a close-up photo of a
# person with {}.", "a portrait of a person with {}."
TEMPLATES = ["a photo of a person with {}.", "a photo of a celebrity with {}.",
             "a close-up photo of a person with {}.", "a portrait of a person with {}."]


def read_attributes(path: Path) -> pd.DataFrame:
    """list_attr_celeba.txt as a frame indexed by file name, values -1/1."""
    try:
        with path.open() as f:
            f.readline()  # the image count
            header = f.readline().split()
            df = pd.read_csv(f, sep=r"\s+", header=None, names=["file", *header], index_col=0)
    except (OSError, ValueError) as e:
        raise DatasetLayoutError(f"{path}: unreadable ({e})") from e
    lost = [c for c in (TARGET, SPURIOUS) if c not in df.columns]
    if lost:
        raise DatasetLayoutError(f"{path}: attribute(s) {lost} missing from its header line "
                                 f"(line 2); expected CelebA's 40 attribute names")
    bad = ~df[[TARGET, SPURIOUS]].isin([-1, 1]).all(axis=1)
    if bad.any():
        raise DatasetLayoutError(f"{path}: image {bad.idxmax()}: {TARGET}/{SPURIOUS} must be -1 or 1")
    return df


def open_celeba(root, split, transform=None) -> ClassificationSet:
    """One split of CelebA (train, val or test of list_eval_partition.txt): label blond hair,
    attribute male, four groups. Raises DatasetMissing or DatasetLayoutError naming the file."""
    check_split("celeba", split, tuple(SPLITS))
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "CelebA's img_align_celeba/ folder, list_attr_celeba.txt and "
                      "list_eval_partition.txt", URL)
    lost = [n for n in ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
            if not (root / n).exists()]
    if lost:
        raise DatasetLayoutError(f"{root}: missing {', '.join(lost)}; expected CelebA's "
                                 "img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt")
    attrs = read_attributes(root / "list_attr_celeba.txt")
    part_path = root / "list_eval_partition.txt"
    try:
        part = pd.read_csv(part_path, sep=r"\s+", header=None, names=["file", "split"], index_col=0)
    except (OSError, ValueError) as e:
        raise DatasetLayoutError(f"{part_path}: unreadable ({e})") from e
    files = part.index[part["split"] == SPLITS[split]]
    unknown = files.difference(attrs.index)
    if len(unknown):
        raise DatasetLayoutError(f"{part_path}: image {unknown[0]} has no line in list_attr_celeba.txt")
    if not len(files):
        raise DatasetLayoutError(f"{part_path}: no image in split {split} ({SPLITS[split]})")
    images = root / "img_align_celeba"
    # one probe instead of 202,599 stats: a wrong image folder shows on its first file; a single
    # lost file fails when the loader reaches it, naming it
    first = images / files[0]
    if not first.is_file():
        raise DatasetLayoutError(f"{images}: {files[0]} (listed in {part_path.name}) not found")
    y = (attrs.loc[files, TARGET] == 1).astype(int)
    male = (attrs.loc[files, SPURIOUS] == 1).astype(int)
    samples = [(str(images / f), int(a), int(b)) for f, a, b in zip(files, y, male)]
    return ClassificationSet(
        name="celeba", root=root, split=split, dataset=ImageList(samples, transform),
        classnames=CLASSNAMES, templates=TEMPLATES, n_attributes=len(ATTRIBUTES),
        group_names=[f"{c}, {a}" for c in CLASSNAMES for a in ATTRIBUTES])
