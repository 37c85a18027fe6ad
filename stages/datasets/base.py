"""The contract every reader keeps: a `ClassificationSet` (one split: its `ImageList` of paths,
labels and spurious attributes, plus what evaluation needs to score it), the group of a
(label, attribute) pair and its inverse (`group_index`, `group_parts`), and the errors of bad data
(`DataError` and its kinds), raised when the reader is opened (before any GPU work) or when an
image is read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, make_dataset

# what PIL raises for a missing, truncated, corrupt or foreign file (UnidentifiedImageError is an OSError)
BAD_IMAGE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class DataError(ValueError):
    """Bad data on disk: the message names the file and, where it applies, the row or column."""


class DatasetLayoutError(DataError):
    """A data set folder is missing or not in its published layout: the message names the folder
    and what was expected (one line for a missing data set, with where it is published)."""


class DatasetMissing(DatasetLayoutError):
    """The files of a data set (or of one of its splits) are not there at all, as opposed to
    being there in a wrong layout: the data check accepts this for a split nobody evaluates."""


class DatasetConfigError(ValueError):
    """A data set's config (class names, templates, splits) does not fit what its reader reads;
    the message names the config key (datasets.NAME.key)."""


def missing(folder: str | Path, what: str, published: str) -> DatasetMissing:
    """The one-line error for a data set that is not there."""
    return DatasetMissing(f"{folder} not found: put {what} there; published at {published}")


def group_index(label, attribute, n_attributes: int):
    """The group of a sample: g = n_attributes * label + attribute (Waterbirds: 0 landbird on land,
    1 landbird on water, 2 waterbird on land, 3 waterbird on water). Ints or arrays alike."""
    return n_attributes * label + attribute


def group_parts(group, n_attributes: int):
    """The inverse of `group_index`: (label, attribute) of group g."""
    return group // n_attributes, group % n_attributes


class ImageList(torch.utils.data.Dataset):
    """One split's samples, whatever the data set's published layout: items (image, label,
    attribute or -1, index), the image read from `path(i)`, then `crop` (ObjectNet's border) and
    `transform` run on it. `source_sizes` [N, 2]: each original's (width, height) when the files are
    a resized copy of them (stages.datasets.resized), else None.

    Kept in numpy arrays, not a list of tuples: DataLoader workers are forked, and touching
    1.28 M Python objects (ImageNet train) copies their pages into every worker through the
    reference counts; flat arrays are shared.
    """

    def __init__(self, samples: Sequence[tuple[str, int, int]], transform=None, crop=None,
                 loader=default_loader, source_sizes: np.ndarray | None = None):
        self.paths = np.array([os.fsencode(s[0]) for s in samples], dtype=bytes)
        self.labels = np.array([s[1] for s in samples], dtype=np.int64)
        self.attributes = np.array([s[2] for s in samples], dtype=np.int64)
        self.transform, self.crop, self.loader = transform, crop, loader
        self.source_sizes = source_sizes

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        """The file path of sample i, as str."""
        return os.fsdecode(self.paths[i])

    def source_size(self, i: int) -> tuple[int, int] | None:
        """The (width, height) of sample i's original when this list reads a resized copy, else None."""
        return None if self.source_sizes is None else (int(self.source_sizes[i, 0]), int(self.source_sizes[i, 1]))

    @property
    def targets(self) -> list[int]:
        """Every sample's label as a list (torchvision's `targets`)."""
        return self.labels.tolist()

    def labels_and_attributes(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of every sample's label and attribute (-1 where the set has none), int64 [N] each."""
        return self.labels.copy(), self.attributes.copy()

    def __getitem__(self, i: int):
        path = self.path(i)
        try:
            image = self.loader(path)
        except BAD_IMAGE as e:   # one line naming the file, also from a loader worker
            raise DataError(f"image {path} (sample {i}) missing or unreadable: {e}") from e
        if self.crop is not None:
            image = self.crop(image)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i]), int(self.attributes[i]), i


@dataclass
class ClassificationSet:
    """One split of one data set, opened and checked.

    The zero-shot head has one class per `classnames` entry, built from `templates` ("{}" marks the
    class name). Labels index `label_names`, which are the head's classes unless the data set
    scores its own classes through the head (ObjectNet: 113 classes from ImageNet's 1000):
    `predict` turns head logits [N, len(classnames)] into labels.
    """

    name: str
    root: Path
    split: str
    dataset: ImageList
    classnames: list[str]
    templates: list[str]
    # head indices the logits are restricted to (ImageNet-R/-A: their 200 of ImageNet's 1000);
    # labels stay head indices, so a prediction outside the subset is impossible, not just wrong
    class_subset: list[int] | None = None
    label_names: list[str] | None = None
    # group-shift sets: attribute in range(n_attributes), group_index(label, attribute, n_attributes)
    group_names: list[str] | None = None
    n_attributes: int = 0
    project_logits: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self):
        if not isinstance(self.dataset, ImageList):
            raise TypeError(f"{self.name} ({self.root}): {type(self.dataset).__name__} is not an ImageList; "
                            "a reader gives its samples as one (paths, labels, attributes)")
        if self.label_names is None:
            self.label_names = list(self.classnames)
        if not self.classnames or not self.templates:
            raise ValueError(f"{self.name}: a data set needs class names and templates")
        bad = [t for t in self.templates if t.count("{}") != 1]
        if bad:
            raise ValueError(f"{self.name}: templates need exactly one '{{}}': {bad[:3]}")

    @property
    def n_groups(self) -> int:
        """The number of groups: 0 for a set without group names."""
        return len(self.group_names or [])

    def restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits over the label space: head logits restricted (class_subset) or projected."""
        if self.project_logits is not None:
            return self.project_logits(logits)
        if self.class_subset is not None:
            out = torch.full_like(logits, float("-inf"))
            idx = torch.as_tensor(self.class_subset, device=logits.device)
            out[:, idx] = logits[:, idx]
            return out
        return logits

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Predicted labels [N] from head logits [N, len(classnames)]."""
        return self.restrict(logits).argmax(dim=1)

    def group(self, label, attribute):
        """The group of (label, attribute), ints or arrays."""
        return group_index(label, attribute, self.n_attributes)

    def labels_and_attributes(self) -> tuple[np.ndarray, np.ndarray]:
        """Every sample's label and attribute (-1 where the set has none), int64 [N] each, in
        item order and without loading an image: counting 1.28 M ImageNet labels by
        __getitem__ would decode every image."""
        return self.dataset.labels_and_attributes()


def subfolders(root: Path) -> list[str]:
    """Sorted names of root's sub-folders (files such as ImageNet-A's README.txt are ignored)."""
    with os.scandir(root) as it:
        return sorted(e.name for e in it if e.is_dir())


def check_folders(root: Path, found: Sequence[str], expected: Sequence[str], what: str) -> None:
    """Raise naming the folder when a class folder is missing or unexpected."""
    found, expected = set(found), set(expected)
    lost, extra = sorted(expected - found), sorted(found - expected)
    if lost:
        raise DatasetLayoutError(
            f"{root}: {len(lost)} of the {len(expected)} expected {what} folders missing "
            f"(e.g. {', '.join(lost[:3])})")
    if extra:
        raise DatasetLayoutError(
            f"{root}: unexpected folder(s) {', '.join(extra[:3])}"
            f"{' ...' if len(extra) > 3 else ''}; expected only the {len(expected)} {what} folders")


def scan(root: Path, class_to_idx: dict[str, int], what: str) -> list[tuple[str, int]]:
    """(path, label) of every image under root/<folder>/ (torchvision's ImageFolder scan); empty
    class folders are allowed, an image-less data set is not."""
    samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise DatasetLayoutError(
            f"{root}: no images ({', '.join(IMG_EXTENSIONS[:3])}, ...) in any of its {what} folders")
    return samples


def require_dir(folder: Path, what: str, published: str) -> Path:
    """`folder`, or the one-line `missing` error when it is not a folder."""
    if not folder.is_dir():
        raise missing(folder, what, published)
    return folder


def check_split(name: str, split: str, splits: Sequence[str]) -> None:
    """Raise naming the data set's splits when `split` is not one of them."""
    if split not in splits:
        raise ValueError(f"{name}: unknown split {split!r}; {name} has {', '.join(splits)}")


def format_templates(templates) -> list[str]:
    """open_clip ships templates as functions of the class name; the pipeline's are "{}" strings."""
    return [t("{}") if callable(t) else t for t in templates]
