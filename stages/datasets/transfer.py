"""Zero-shot / transfer classification sets: Caltech101, Oxford Flowers-102, Stanford Cars, SUN397.

`root` is the folder torchvision would be given; each set lives in its own sub-folder of it
(named in the error when missing). Stanford Cars' devkit is read by torchvision.datasets
(download=False), its (path, label) list then read as every split is, an ImageList.
Caltech101, Flowers-102 and SUN397 are read here, with torchvision's labels: Caltech101 and SUN397
for their train/test splits (torchvision reads every image), Flowers-102 because torchvision
refuses any imagelabels.mat / setid.mat whose md5 is not the published one, which a test tree
cannot match.

Class names and templates are CLIP's published ones (stages.datasets.published_prompts), known
without the data: the readers check that the data's classes are those (101 Caltech101 object
folders, Stanford Cars' 196 devkit names, SUN397's 397 ClassName.txt entries).

Splits. Flowers-102 publishes train/val/test. Caltech101, Stanford Cars and SUN397 publish no
val: there `trainval` is the published training split (Caltech101: the first 30 images of each
class; SUN397: partition 1's Training_01.txt), `val` a fixed 20% of it and `train` the other 80%
(`carve`: FLYP's rule for Stanford Cars, sklearn's train_test_split(test_size=0.2,
random_state=10), applied to every set without a val). `test` is never touched by the carving, so
a choice made on `val` (the linear probe's L2, a checkpoint) never sees a reported image.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import scipy.io
from torchvision import datasets as tvd
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from . import published_prompts as prompts
from .base import (
    ClassificationSet,
    DatasetLayoutError,
    DatasetMissing,
    ImageList,
    check_folders,
    check_split,
    missing,
    require_dir,
    subfolders,
)

CALTECH_URL = "https://data.caltech.edu/records/mzrjq-6wc02"
FLOWERS_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
SUN_URL = "https://vision.princeton.edu/projects/2010/SUN/"
SUN_PARTITIONS_URL = "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"

# the val carved from a published training split (FLYP's datacreation_scripts/stanfordCars.py:
# train_test_split(test_size=0.2, random_state=10)); the same draw for every set without a val
VAL_FRACTION = 0.2
VAL_SEED = 10
CARVED_SPLITS = ("train", "val", "trainval")

CALTECH_SPLITS = (*CARVED_SPLITS, "test", "all")
# the common protocol (Fei-Fei et al. 2004; VTAB, CoOp): per class the first 30 images train,
# the rest test. Every published class has at least 31 images, so every class is tested.
CALTECH_TRAIN_PER_CLASS = 30
# not an object class: torchvision drops it, so does every split here (labels stay torchvision's)
CALTECH_BACKGROUND = "BACKGROUND_Google"
# 101_ObjectCategories/'s folders, sorted (torchvision's label order); CLIP's names are in this order
CALTECH_FOLDERS = (
    "Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor", "ant",
    "barrel", "bass", "beaver", "binocular", "bonsai", "brain", "brontosaurus", "buddha",
    "butterfly", "camera", "cannon", "car_side", "ceiling_fan", "cellphone", "chair", "chandelier",
    "cougar_body", "cougar_face", "crab", "crayfish", "crocodile", "crocodile_head", "cup",
    "dalmatian", "dollar_bill", "dolphin", "dragonfly", "electric_guitar", "elephant", "emu",
    "euphonium", "ewer", "ferry", "flamingo", "flamingo_head", "garfield", "gerenuk", "gramophone",
    "grand_piano", "hawksbill", "headphone", "hedgehog", "helicopter", "ibis", "inline_skate",
    "joshua_tree", "kangaroo", "ketch", "lamp", "laptop", "llama", "lobster", "lotus", "mandolin",
    "mayfly", "menorah", "metronome", "minaret", "nautilus", "octopus", "okapi", "pagoda", "panda",
    "pigeon", "pizza", "platypus", "pyramid", "revolver", "rhino", "rooster", "saxophone",
    "schooner", "scissors", "scorpion", "sea_horse", "snoopy", "soccer_ball", "stapler",
    "starfish", "stegosaurus", "stop_sign", "strawberry", "sunflower", "tick", "trilobite",
    "umbrella", "watch", "water_lilly", "wheelchair", "wild_cat", "windsor_chair", "wrench",
    "yin_yang")
FLOWERS_SPLITS = {"train": "trnid", "val": "valid", "test": "tstid"}   # setid.mat's keys
CARS_SPLITS = (*CARVED_SPLITS, "test")
# partition 1 of the official ten (50 training + 50 test images per class), as CLIP's evaluation
SUN_PARTITIONS = {"trainval": "Training_01.txt", "test": "Testing_01.txt"}
SUN_SPLITS = (*CARVED_SPLITS, "test", "all")


def caltech_classnames() -> list[str]:
    """CLIP's 101 names (clip-benchmark's list without its first entry, "background")."""
    names = prompts.bench_classnames("caltech101")
    assert names[0] == "background" and len(names) == len(CALTECH_FOLDERS) + 1
    return names[1:]


def flowers_classnames() -> list[str]:
    """CLIP's 102 names in the label order (torchvision's list differs in three names)."""
    return prompts.bench_classnames("flowers")


def cars_classnames() -> list[str]:
    """CLIP's 196 Stanford Cars names, in the label order (the devkit's)."""
    return prompts.clip_classnames("StanfordCars")


def sun_classnames() -> list[str]:
    """CLIP's 397 SUN397 names, in the label order (ClassName.txt's)."""
    return prompts.clip_classnames("SUN397")


CALTECH_TEMPLATES = prompts.bench_templates("caltech101")
FLOWERS_TEMPLATES = prompts.bench_templates("flowers")
CARS_TEMPLATES = prompts.bench_templates("cars")
SUN_TEMPLATES = prompts.bench_templates("sun397")


def carve(n: int, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) positions of a published training split of n items: the val is the first
    ceil(fraction * n) of one seeded permutation (sklearn's train_test_split draw), both sorted so
    that items keep the published order. Depends on n and the seed only: reproducible anywhere."""
    n_val = math.ceil(fraction * n)
    order = np.random.RandomState(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def carved(items: list, split: str) -> list:
    """The items of `split`: train or val carved from `items` (the published training split,
    `carve`), or `items` unchanged for any other split (trainval, test, all)."""
    if split not in ("train", "val"):
        return items
    train, val = carve(len(items))
    return [items[i] for i in (train if split == "train" else val)]


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


def caltech_split(files: list[str], split: str) -> list[str]:
    """One class's images (sorted by name) in the published split: the first 30 train, the rest test."""
    return {"trainval": files[:CALTECH_TRAIN_PER_CLASS], "test": files[CALTECH_TRAIN_PER_CLASS:],
            "all": files}[split]


def open_caltech101(root, split, transform=None) -> ClassificationSet:
    """root/caltech101/101_ObjectCategories/<class>/image_0001.jpg ...; labels index the sorted
    class folders without BACKGROUND_Google (torchvision's). train/val carve the first 30 images
    of every class together (`carved`)."""
    check_split("caltech101", split, CALTECH_SPLITS)
    folder = require_dir(Path(root) / "caltech101" / "101_ObjectCategories",
                         "Caltech101's 101_ObjectCategories/ (one folder per class)", CALTECH_URL)
    classes = [c for c in subfolders(folder) if c != CALTECH_BACKGROUND]
    check_folders(folder, classes, CALTECH_FOLDERS, "Caltech101 class")
    published = "trainval" if split in CARVED_SPLITS else split
    samples = [(str(folder / c / f), label, -1) for label, c in enumerate(CALTECH_FOLDERS)
               for f in caltech_split(image_files(folder / c), published)]
    if not samples:
        raise DatasetLayoutError(
            f"{folder}: no images in split {split!r} ({len(classes)} class folders; train is the "
            f"first {CALTECH_TRAIN_PER_CLASS} images of each class, test the rest)")
    return ClassificationSet(
        name="caltech101", root=folder, split=split, dataset=ImageList(carved(samples, split), transform),
        classnames=caltech_classnames(), templates=list(CALTECH_TEMPLATES))


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
    classnames = flowers_classnames()
    if labels.min() < 0 or labels.max() >= len(classnames):
        raise DatasetLayoutError(f"{folder / 'imagelabels.mat'}: labels must be 1 ... {len(classnames)}")
    if ids.min() < 1 or ids.max() > len(labels):
        raise DatasetLayoutError(f"{folder / 'setid.mat'}: {FLOWERS_SPLITS[split]} holds image ids "
                                 f"outside 1 ... {len(labels)} (the images of imagelabels.mat)")
    paths = [str(folder / "jpg" / f"image_{i:05d}.jpg") for i in ids]
    check_listed(folder / "setid.mat", paths)
    return ClassificationSet(
        name="flowers102", root=folder, split=split,
        dataset=ImageList([(p, int(labels[i - 1]), -1) for p, i in zip(paths, ids)], transform),
        classnames=classnames, templates=list(FLOWERS_TEMPLATES))


def _same_names(found: list[str], expected: list[str]) -> bool:
    """Equal up to case and runs of white space (CLIP's lists were typed from the files)."""
    def norm(names):
        return [" ".join(n.split()).lower() for n in names]
    return norm(found) == norm(expected)


CARS_LAYOUT = "Stanford Cars' devkit/, cars_train/, cars_test/ and cars_test_annos_withlabels.mat"
CARS_URL = "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (offline; mirrors on Kaggle)"


def open_stanford_cars(root, split, transform=None) -> ClassificationSet:
    """torchvision's reader of root/stanford_cars/; train/val carve its train split, in the order
    of devkit/cars_train_annos.mat (FLYP's split: the same draw over the same order)."""
    check_split("stanford_cars", split, CARS_SPLITS)
    folder = Path(root) / "stanford_cars"
    published = "train" if split in CARVED_SPLITS else split
    try:
        base = tvd.StanfordCars(root, split=published, download=False)
    except RuntimeError as e:
        if "not found" not in str(e).lower():
            raise  # e.g. scipy missing: torchvision's own message says what to install
        raise DatasetMissing(f"{folder} not found or incomplete: put {CARS_LAYOUT} there; "
                             f"published at {CARS_URL}") from e
    if len(base) == 0:
        raise DatasetLayoutError(f"{folder}: no images found; expected {CARS_LAYOUT}")
    classnames = cars_classnames()
    if not _same_names(list(base.classes), classnames):
        raise DatasetLayoutError(
            f"{folder / 'devkit' / 'cars_meta.mat'}: its {len(base.classes)} class names are not "
            f"Stanford Cars' {len(classnames)} (CLIP's list, in the devkit's order)")
    # torchvision's (path, label) list, in the devkit's order (private, but torchvision's only list)
    samples = carved([(path, int(label), -1) for path, label in base._samples], split)
    return ClassificationSet(name="stanford_cars", root=folder, split=split,
                             dataset=ImageList(samples, transform), classnames=classnames,
                             templates=list(CARS_TEMPLATES))


def sun_classes(folder: Path) -> list[str]:
    """ClassName.txt's classes ("/a/abbey" -> "abbey"), in its order: the labels."""
    path = folder / "ClassName.txt"
    if not path.is_file():
        raise DatasetLayoutError(f"{path} not found: expected the extracted SUN397/ folder "
                                 "(ClassName.txt, a/abbey/*.jpg, ...)")
    return [line.strip()[3:] for line in path.read_text().splitlines() if line.strip()]


def sun_name(cls: str) -> str:
    """A class's prompt name, CLIP's and clip-benchmark's rule: "apartment_building/outdoor" ->
    "apartment building outdoor"."""
    return cls.replace("_", " ").replace("/", " ")


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
    """root/SUN397/ as extracted (ClassName.txt, a/abbey/sun_*.jpg, ...). "trainval"/"test":
    partition 1 of the official ten (train/val carve its training list); "all": every image
    (torchvision's reading)."""
    check_split("sun397", split, SUN_SPLITS)
    folder = Path(root) / "SUN397"
    if not folder.is_dir():
        raise missing(folder, "the extracted SUN397/ folder (ClassName.txt, a/abbey/*.jpg, ...)", SUN_URL)
    classes = sun_classes(folder)
    classnames = sun_classnames()
    if [sun_name(c) for c in classes] != classnames:
        raise DatasetLayoutError(f"{folder / 'ClassName.txt'}: its {len(classes)} classes are not SUN397's "
                                 f"{len(classnames)} (CLIP's names, in ClassName.txt's order)")
    index = {c: i for i, c in enumerate(classes)}
    if split == "all":
        # sorted: rglob's order is the file system's, and item indices should not depend on it
        listing, relative = folder, sorted(str(p.relative_to(folder)) for p in folder.rglob("sun_*.jpg"))
    else:
        listing, relative = sun_partition(Path(root), folder, "trainval" if split in CARVED_SPLITS else split)
    unknown = [r for r in relative if sun_class_of(r) not in index]
    if unknown:
        raise DatasetLayoutError(f"{listing}: image {unknown[0]} is in class {sun_class_of(unknown[0])!r}, "
                                 f"not one of the {len(classes)} of {folder / 'ClassName.txt'}")
    if not relative:
        raise DatasetLayoutError(f"{listing}: no images found; expected SUN397's a/abbey/sun_*.jpg, ...")
    relative = carved(relative, split)
    paths = [str(folder / r) for r in relative]
    if split != "all":
        check_listed(listing, paths)
    return ClassificationSet(
        name="sun397", root=folder, split=split,
        dataset=ImageList([(p, index[sun_class_of(r)], -1) for p, r in zip(paths, relative)], transform),
        classnames=classnames, templates=list(SUN_TEMPLATES))
