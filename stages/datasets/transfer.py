"""Zero-shot / transfer classification sets: Caltech101, Oxford Flowers-102, Stanford Cars, SUN397.

`root` is the folder torchvision would be given; each set lives in its own sub-folder of it
(named in the error when missing). Stanford Cars is read by torchvision.datasets (download=False).
Caltech101, Flowers-102 and SUN397 are read here, with torchvision's labels: Caltech101 and SUN397
for their train/test splits (torchvision reads every image), Flowers-102 because torchvision
refuses any imagelabels.mat / setid.mat whose md5 is not the published one, which a test tree
cannot match. Class names are torchvision's, tidied where the raw folder names would make poor
prompts; templates follow the CLIP paper's per-data-set prompts (abridged for Caltech101), since
open_clip 3.3 ships templates for ImageNet only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch
from torchvision import datasets as tvd
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from .base import (ClassificationSet, DatasetLayoutError, DatasetMissing, ImageList, check_split,
                   missing, require_dir, subfolders)

CALTECH_URL = "https://data.caltech.edu/records/mzrjq-6wc02"
FLOWERS_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
SUN_URL = "https://vision.princeton.edu/projects/2010/SUN/"
SUN_PARTITIONS_URL = "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"

CALTECH_SPLITS = ("train", "test", "all")
# the common protocol (Fei-Fei et al. 2004; VTAB, CoOp): per class the first 30 images train,
# the rest test. Every published class has at least 31 images, so every class is tested.
CALTECH_TRAIN_PER_CLASS = 30
# not an object class: torchvision drops it, so does every split here (labels stay torchvision's)
CALTECH_BACKGROUND = "BACKGROUND_Google"
FLOWERS_SPLITS = {"train": "trnid", "val": "valid", "test": "tstid"}   # setid.mat's keys
CARS_SPLITS = ("train", "test")
# partition 1 of the official ten (50 training + 50 test images per class), as CLIP's evaluation
SUN_PARTITIONS = {"train": "Training_01.txt", "test": "Testing_01.txt"}
SUN_SPLITS = (*SUN_PARTITIONS, "all")


class Indexed(torch.utils.data.Dataset):
    """A torchvision data set's (image, label) as (image, label, -1, index)."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, label = self.base[i]
        return image, int(label), -1, i

    def labels_and_attributes(self) -> tuple[np.ndarray, np.ndarray]:
        labels = np.asarray(torchvision_labels(self.base), dtype=np.int64)
        return labels, np.full(len(labels), -1, dtype=np.int64)


def torchvision_labels(base) -> list[int]:
    """The labels a torchvision data set keeps beside its image paths. Each class stores them its
    own way (StanfordCars: `_samples` of (path, label); others `_labels`, `targets` or `y`)."""
    if isinstance(base, tvd.StanfordCars):
        return [label for _, label in base._samples]
    for attr in ("_labels", "targets", "y"):
        if hasattr(base, attr):
            return list(getattr(base, attr))
    raise TypeError(f"{type(base).__name__}: no label list (_samples, _labels, targets, y) in this "
                    "torchvision version")


def _open(name, make, folder: Path, what: str, url: str, split: str, classnames, templates):
    try:
        base = make()
    except RuntimeError as e:
        if "not found" not in str(e).lower():
            raise  # e.g. scipy missing: torchvision's own message says what to install
        raise DatasetMissing(f"{folder} not found or incomplete: put {what} there; "
                             f"published at {url}") from e
    if len(base) == 0:
        raise DatasetLayoutError(f"{folder}: no images found; expected {what}")
    return ClassificationSet(name=name, root=folder, split=split, dataset=Indexed(base),
                             classnames=classnames(base), templates=templates)


def image_files(folder: Path) -> list[str]:
    """Sorted names of the image files in folder."""
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and has_file_allowed_extension(p.name, IMG_EXTENSIONS))


def check_listed(listing: Path, paths: list[str]) -> None:
    """Raise naming the listing file when images it lists are not on disk (a partial extract)."""
    lost = [p for p in paths if not Path(p).is_file()]
    if lost:
        raise DatasetLayoutError(f"{listing}: {len(lost)} of the {len(paths)} images it lists not "
                                 f"found (e.g. {lost[0]})")


# folder names of Caltech101 that are not nouns a prompt can use (CLIP's names for them)
CALTECH_NAMES = {"Faces": "off-center face", "Faces_easy": "centered face", "Leopards": "leopard",
                 "Motorbikes": "motorbike", "airplanes": "airplane", "car_side": "side of a car"}
CALTECH_TEMPLATES = ["a photo of a {}.", "a painting of a {}.", "a plastic {}.",
                     "a sculpture of a {}.", "a sketch of a {}.", "a toy {}.",
                     "a rendition of a {}.", "a cartoon {}.", "a drawing of a {}.",
                     "a photo of the {}."]
FLOWERS_TEMPLATES = ["a photo of a {}, a type of flower."]
CARS_TEMPLATES = ["a photo of a {}.", "a photo of the {}.", "a photo of my {}.", "i love my {}!",
                  "a photo of my dirty {}.", "a photo of my clean {}.", "a photo of my new {}.",
                  "a photo of my old {}."]
SUN_TEMPLATES = ["a photo of a {}.", "a photo of the {}."]


def caltech_split(files: list[str], split: str) -> list[str]:
    """One class's images (sorted by name) in the given split."""
    return {"train": files[:CALTECH_TRAIN_PER_CLASS], "test": files[CALTECH_TRAIN_PER_CLASS:],
            "all": files}[split]


def open_caltech101(root, split, transform=None) -> ClassificationSet:
    """root/caltech101/101_ObjectCategories/<class>/image_0001.jpg ...; labels index the sorted
    class folders without BACKGROUND_Google (torchvision's)."""
    check_split("caltech101", split, CALTECH_SPLITS)
    folder = require_dir(Path(root) / "caltech101" / "101_ObjectCategories",
                         "Caltech101's 101_ObjectCategories/ (one folder per class)", CALTECH_URL)
    classes = [c for c in subfolders(folder) if c != CALTECH_BACKGROUND]
    samples = [(str(folder / c / f), label, -1) for label, c in enumerate(classes)
               for f in caltech_split(image_files(folder / c), split)]
    if not samples:
        raise DatasetLayoutError(
            f"{folder}: no images in split {split!r} ({len(classes)} class folders; train is the "
            f"first {CALTECH_TRAIN_PER_CLASS} images of each class, test the rest)")
    return ClassificationSet(
        name="caltech101", root=folder, split=split, dataset=ImageList(samples, transform),
        classnames=[CALTECH_NAMES.get(c, c.replace("_", " ")) for c in classes],
        templates=CALTECH_TEMPLATES)


def load_mat(path: Path, key: str) -> np.ndarray:
    """One array of a .mat file, as a 1-d int array; errors name the file and key."""
    try:
        value = scipy.io.loadmat(path, squeeze_me=True)[key]
        return np.atleast_1d(np.asarray(value)).astype(np.int64)
    except KeyError:
        raise DatasetLayoutError(f"{path}: no variable {key!r}") from None
    except Exception as e:  # scipy raises several types for a file that is not a .mat
        raise DatasetLayoutError(f"{path}: unreadable .mat file ({e})") from e


def open_flowers102(root, split, transform=None) -> ClassificationSet:
    """root/flowers-102/: jpg/image_00001.jpg ..., imagelabels.mat (labels 1 ... 102 by image id)
    and setid.mat (trnid, valid, tstid: image ids). Labels are imagelabels - 1 (torchvision's)."""
    check_split("flowers102", split, tuple(FLOWERS_SPLITS))
    folder = Path(root) / "flowers-102"
    if not folder.is_dir():
        raise missing(folder, "Oxford Flowers-102's jpg/, imagelabels.mat and setid.mat", FLOWERS_URL)
    lost = [n for n in ("jpg", "imagelabels.mat", "setid.mat") if not (folder / n).exists()]
    if lost:
        raise DatasetLayoutError(f"{folder}: missing {', '.join(lost)}; expected Oxford "
                                 "Flowers-102's jpg/, imagelabels.mat and setid.mat")
    labels = load_mat(folder / "imagelabels.mat", "labels") - 1
    ids = load_mat(folder / "setid.mat", FLOWERS_SPLITS[split])
    n_classes = len(tvd.Flowers102.classes)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DatasetLayoutError(f"{folder / 'imagelabels.mat'}: labels must be 1 ... {n_classes}")
    if ids.min() < 1 or ids.max() > len(labels):
        raise DatasetLayoutError(f"{folder / 'setid.mat'}: {FLOWERS_SPLITS[split]} holds image ids "
                                 f"outside 1 ... {len(labels)} (the images of imagelabels.mat)")
    paths = [str(folder / "jpg" / f"image_{i:05d}.jpg") for i in ids]
    check_listed(folder / "setid.mat", paths)
    return ClassificationSet(
        name="flowers102", root=folder, split=split,
        dataset=ImageList([(p, int(labels[i - 1]), -1) for p, i in zip(paths, ids)], transform),
        classnames=list(tvd.Flowers102.classes), templates=FLOWERS_TEMPLATES)


def open_stanford_cars(root, split, transform=None) -> ClassificationSet:
    check_split("stanford_cars", split, CARS_SPLITS)
    return _open(
        "stanford_cars",
        lambda: tvd.StanfordCars(root, split=split, transform=transform, download=False),
        Path(root) / "stanford_cars",
        "Stanford Cars' devkit/, cars_train/, cars_test/ and cars_test_annos_withlabels.mat",
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (offline; mirrors on Kaggle)", split,
        lambda b: list(b.classes), CARS_TEMPLATES)


def sun_classes(folder: Path) -> list[str]:
    """ClassName.txt's classes ("/a/abbey" -> "abbey"), in its order: the labels."""
    path = folder / "ClassName.txt"
    if not path.is_file():
        raise DatasetLayoutError(f"{path} not found: expected the extracted SUN397/ folder "
                                 "(ClassName.txt, a/abbey/*.jpg, ...)")
    return [line.strip()[3:] for line in path.read_text().splitlines() if line.strip()]


def sun_class_of(relative: str) -> str:
    """The class of an image path relative to SUN397/ ("a/apartment_building/outdoor/sun_x.jpg")."""
    return "/".join(Path(relative).parts[1:-1])


def sun_partition(root: Path, folder: Path, split: str) -> tuple[Path, list[str]]:
    """(listing file, image paths relative to SUN397/) of one split of partition 1."""
    name = SUN_PARTITIONS[split]
    candidates = [folder / "Partitions", root / "Partitions"]
    found = [c / name for c in candidates if (c / name).is_file()]
    if not found:
        raise DatasetMissing(
            f"{candidates[0] / name} (or {candidates[1] / name}) not found: put the official "
            f"SUN397 partitions (Training_01.txt, Testing_01.txt) there; published at {SUN_PARTITIONS_URL}")
    lines = [line.strip().lstrip("/") for line in found[0].read_text().splitlines()]
    return found[0], [line for line in lines if line]


def open_sun397(root, split, transform=None) -> ClassificationSet:
    """root/SUN397/ as extracted (ClassName.txt, a/abbey/sun_*.jpg, ...). Splits "train"/"test":
    partition 1 of the official ten; "all": every image (torchvision's reading)."""
    check_split("sun397", split, SUN_SPLITS)
    folder = Path(root) / "SUN397"
    if not folder.is_dir():
        raise missing(folder, "the extracted SUN397/ folder (ClassName.txt, a/abbey/*.jpg, ...)", SUN_URL)
    classes = sun_classes(folder)
    index = {c: i for i, c in enumerate(classes)}
    if split == "all":
        # sorted: rglob's order is the file system's, and item indices should not depend on it
        listing, relative = folder, sorted(str(p.relative_to(folder)) for p in folder.rglob("sun_*.jpg"))
    else:
        listing, relative = sun_partition(Path(root), folder, split)
    unknown = [r for r in relative if sun_class_of(r) not in index]
    if unknown:
        raise DatasetLayoutError(f"{listing}: image {unknown[0]} is in class {sun_class_of(unknown[0])!r}, "
                                 f"not one of the {len(classes)} of {folder / 'ClassName.txt'}")
    if not relative:
        raise DatasetLayoutError(f"{listing}: no images found; expected SUN397's a/abbey/sun_*.jpg, ...")
    paths = [str(folder / r) for r in relative]
    if split != "all":
        check_listed(listing, paths)
    return ClassificationSet(
        name="sun397", root=folder, split=split,
        dataset=ImageList([(p, index[sun_class_of(r)], -1) for p, r in zip(paths, relative)], transform),
        # "apartment_building/outdoor" -> "apartment building outdoor", as CLIP's names
        classnames=[c.replace("_", " ").replace("/", " ") for c in classes], templates=SUN_TEMPLATES)
