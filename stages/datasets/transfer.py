"""Zero-shot / transfer classification sets read by torchvision.datasets (download=False).

`root` is the folder torchvision is given; each class looks in its own sub-folder of it (named
in the error when missing). Class names are torchvision's, tidied where the raw folder names
would make poor prompts; templates follow the CLIP paper's per-data-set prompts (abridged for
Caltech101), since open_clip 3.3 ships templates for ImageNet only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import datasets as tvd

from .base import ClassificationSet, DatasetLayoutError, check_split


class Indexed(torch.utils.data.Dataset):
    """A torchvision data set's (image, label) as (image, label, -1, index)."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, label = self.base[i]
        return image, int(label), -1, i


def _open(name, make, folder: Path, what: str, url: str, split: str, classnames, templates):
    try:
        base = make()
    except RuntimeError as e:
        if "not found" not in str(e).lower():
            raise  # e.g. scipy missing: torchvision's own message says what to install
        raise DatasetLayoutError(f"{folder} not found or incomplete: put {what} there; "
                                 f"published at {url}") from e
    if len(base) == 0:
        raise DatasetLayoutError(f"{folder}: no images found; expected {what}")
    return ClassificationSet(name=name, root=folder, split=split, dataset=Indexed(base),
                             classnames=classnames(base), templates=templates)


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


def open_caltech101(root, split, transform=None) -> ClassificationSet:
    # Caltech101 has no official split (torchvision reads every image): split "all"
    check_split("caltech101", split, ("all",))
    return _open(
        "caltech101", lambda: tvd.Caltech101(root, transform=transform, download=False),
        Path(root) / "caltech101" / "101_ObjectCategories",
        "Caltech101's 101_ObjectCategories/ (one folder per class, BACKGROUND_Google included)",
        "https://data.caltech.edu/records/mzrjq-6wc02", split,
        lambda b: [CALTECH_NAMES.get(c, c.replace("_", " ")) for c in b.categories],
        CALTECH_TEMPLATES)


def open_flowers102(root, split, transform=None) -> ClassificationSet:
    check_split("flowers102", split, ("train", "val", "test"))
    return _open(
        "flowers102", lambda: tvd.Flowers102(root, split=split, transform=transform, download=False),
        Path(root) / "flowers-102",
        "Oxford Flowers-102's jpg/, imagelabels.mat and setid.mat (checked by md5)",
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/", split,
        lambda b: list(b.classes), FLOWERS_TEMPLATES)


def open_stanford_cars(root, split, transform=None) -> ClassificationSet:
    check_split("stanford_cars", split, ("train", "test"))
    return _open(
        "stanford_cars",
        lambda: tvd.StanfordCars(root, split=split, transform=transform, download=False),
        Path(root) / "stanford_cars",
        "Stanford Cars' devkit/, cars_train/, cars_test/ and cars_test_annos_withlabels.mat",
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (offline; mirrors on Kaggle)", split,
        lambda b: list(b.classes), CARS_TEMPLATES)


def open_sun397(root, split, transform=None) -> ClassificationSet:
    # torchvision reads every image; the official 10 partitions are not applied: split "all"
    check_split("sun397", split, ("all",))
    return _open(
        "sun397", lambda: tvd.SUN397(root, transform=transform, download=False),
        Path(root) / "SUN397", "the extracted SUN397/ folder (ClassName.txt, a/abbey/*.jpg, ...)",
        "https://vision.princeton.edu/projects/2010/SUN/", split,
        # "apartment_building/outdoor" -> "apartment building outdoor", as CLIP's names
        lambda b: [c.replace("_", " ").replace("/", " ") for c in b.classes], SUN_TEMPLATES)
