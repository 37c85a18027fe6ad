"""Tiny data set trees in each data set's published layout, for the readers' tests and end-to-end
pipeline tests.

Each `write_<reader>(root, ...)` writes one data set under `root` and returns the root to put in
the config (datasets.NAME.root), i.e. what `stages.datasets.open(reader, root, split)` takes:
the data set's own folder (ImageNet, Waterbirds, ...) or, for the sets torchvision names
(Caltech101, Flowers-102, Stanford Cars, SUN397), the folder holding theirs. `write_all(base)`
writes all of them. Images are small JPEGs (ObjectNet's PNGs), one colour per class of the
reader's label space (ImageNet's shifts share ImageNet's), so a tiny model can learn something.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import scipy.io as sio
from PIL import Image

from stages.datasets import imagenet, transfer

SIZE = (16, 16)  # (width, height) of every image


def colour(label: int) -> tuple[int, int, int]:
    """A fixed colour per class label, away from black and white."""
    return tuple(int(v) for v in np.random.default_rng(1000 + label).integers(20, 236, 3))


def jpeg(path: Path, rgb: int | tuple[int, int, int] = 128, size=SIZE) -> Path:
    """One image of a single colour (an int: that grey); the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (rgb,) * 3 if isinstance(rgb, int) else rgb).save(path)
    return path


def folder_tree(root: Path, folders, images: dict[str, int] | None = None, ext=".JPEG",
                colours: dict[str, tuple[int, int, int]] | None = None) -> Path:
    """Every folder of `folders`, with images[folder] images in the listed ones only."""
    for f in folders:
        (root / f).mkdir(parents=True, exist_ok=True)
    for f, n in (images or {}).items():
        for k in range(n):
            jpeg(root / f / f"{f}_{k}{ext}", (colours or {}).get(f, 128))
    return root


# ---- ImageNet and its shifts: labels are sorted-wnid indices -------------------------------------

# goldfinch, flamingo, banana: classes of ImageNet-R and -A too, so every shift has them
IMAGENET_CLASSES = (11, 130, 954)


def _wnid_images(root: Path, folders, classes, n: int, ext: str, name=None) -> Path:
    """Every folder of `folders`; n images in the folder of each ImageNet index of `classes`."""
    wnids = imagenet.wnids()
    lost = [c for c in classes if wnids[c] not in folders]
    if lost:
        raise ValueError(f"ImageNet classes {lost} have no folder in this data set")
    for f in folders:
        (root / f).mkdir(parents=True, exist_ok=True)
    for c in classes:
        for k in range(n):
            stem = name(c, k) if name else f"{wnids[c]}_{k}"
            jpeg(root / wnids[c] / f"{stem}{ext}", colour(c))
    return root


def write_imagenet(root: Path, classes=IMAGENET_CLASSES, n_train: int = 4, n_val: int = 2) -> Path:
    """root/{train,val}/<1000 wnid folders>/; val sorted into wnid folders as valprep.sh does."""
    root = Path(root)
    wnids = imagenet.wnids()
    _wnid_images(root / "train", wnids, classes, n_train, ".JPEG")
    _wnid_images(root / "val", wnids, classes, n_val, ".JPEG",
                 name=lambda c, k: f"ILSVRC2012_val_{1000 * k + c + 1:08d}")
    return root


def write_imagenet_v2(root: Path, classes=IMAGENET_CLASSES, n: int = 2) -> Path:
    """imagenetv2-matched-frequency-format-val/: folders 0 ... 999 named by label."""
    root = Path(root)
    for i in range(1000):
        (root / str(i)).mkdir(parents=True, exist_ok=True)
    for c in classes:
        for k in range(n):
            jpeg(root / str(c) / f"{k:040x}.jpeg", colour(c))  # published names: 40 hex digits
    return root


def write_imagenet_sketch(root: Path, classes=IMAGENET_CLASSES, n: int = 2) -> Path:
    """sketch/<1000 wnid folders>/sketch_<k>.JPEG."""
    return _wnid_images(Path(root), imagenet.wnids(), classes, n, ".JPEG",
                        name=lambda c, k: f"sketch_{k}")


def _subset_set(root: Path, subset: str, classes, n: int) -> Path:
    root = Path(root)
    _wnid_images(root, imagenet.timm_subset(subset), classes, n, ".jpg")
    (root / "README.txt").write_text("published next to the 200 class folders\n")
    return root


def write_imagenet_r(root: Path, classes=IMAGENET_CLASSES, n: int = 2) -> Path:
    """imagenet-r/<200 wnid folders>/*.jpg and README.txt."""
    return _subset_set(root, "imagenet_r", classes, n)


def write_imagenet_a(root: Path, classes=IMAGENET_CLASSES, n: int = 2) -> Path:
    """imagenet-a/<200 wnid folders>/*.jpg and README.txt."""
    return _subset_set(root, "imagenet_a", classes, n)


# ---- ObjectNet --------------------------------------------------------------------------------

def ilsvrc_id(index: int) -> int:
    """A made-up but bijective sorted-wnid index -> ILSVRC-2012 id, so that a reader skipping
    pytorch_to_imagenet_2012_id.json gets the classes wrong."""
    return (7 * index + 3) % 1000


# folder -> (ObjectNet label, ImageNet indices)
OBJECTNET = {"banana": ("Banana", [954]), "alarm_clock": ("Alarm clock", [409, 530]),
             "chair": ("Chair", [423, 559, 765])}


def write_objectnet(root: Path, border=(255, 0, 0), n: int = 1, size=(12, 10)) -> Path:
    """objectnet-1.0/: mappings/ (the four published files) and images/<folder>/*.png with the
    1-pixel `border`; air_freshener is an ObjectNet class with no ImageNet twin."""
    root = Path(root)
    maps = root / "mappings"
    maps.mkdir(parents=True, exist_ok=True)
    folder_to_label = {f: lab for f, (lab, _) in OBJECTNET.items()}
    folder_to_label["air_freshener"] = "Air freshener"
    (maps / "folder_to_objectnet_label.json").write_text(json.dumps(folder_to_label))
    (maps / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {lab: "; ".join(f"imagenet name {ilsvrc_id(i)}" for i in idx) for lab, idx in OBJECTNET.values()}))
    (maps / "imagenet_to_label_2012_v2").write_text("".join(f"imagenet name {i}\n" for i in range(1000)))
    (maps / "pytorch_to_imagenet_2012_id.json").write_text(
        json.dumps({str(p): ilsvrc_id(p) for p in range(1000)}))
    w, h = size
    for f in [*OBJECTNET, "air_freshener"]:
        pixels = np.empty((h, w, 3), dtype=np.uint8)
        pixels[:] = colour(OBJECTNET[f][1][0] if f in OBJECTNET else 999)
        pixels[0, :], pixels[-1, :], pixels[:, 0], pixels[:, -1] = border, border, border, border
        (root / "images" / f).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            Image.fromarray(pixels).save(root / "images" / f / f"{f}_{k}.png")
    return root


# ---- group shift: Waterbirds and CelebA -------------------------------------------------------

# images per group (g = 2 * y + place: landbird/land, landbird/water, waterbird/land,
# waterbird/water) in each split; train is mostly correlated, as the published set. Groups 1 and 2
# differ in size so that a count by place * 2 + y would show.
WATERBIRDS_COUNTS = {"train": [4, 1, 2, 3], "val": [1, 1, 1, 1], "test": [2, 1, 2, 1]}
WATERBIRDS_SPECIES = ["013.Bobolink", "001.Black_footed_Albatross"]   # a landbird, a waterbird
WATERBIRDS_PLACES = ["/b/bamboo_forest", "/l/lake/natural"]
WATERBIRDS_BACKGROUNDS = [(90, 140, 60), (60, 110, 190)]               # land, water


def write_waterbirds(root: Path, counts=WATERBIRDS_COUNTS) -> Path:
    """waterbird_complete95_forest2water2/: metadata.csv (img_id, img_filename, y, split, place,
    place_filename) and <species folder>/*.jpg; a bird square of its class colour on a
    background of its place's."""
    root = Path(root)
    rows = ["img_id,img_filename,y,split,place,place_filename"]
    for split, code in (("train", 0), ("val", 1), ("test", 2)):
        for g, n in enumerate(counts.get(split, [0, 0, 0, 0])):
            y, place = divmod(g, 2)
            for _ in range(n):
                i = len(rows)
                species = WATERBIRDS_SPECIES[y]
                name = f"{species}/{species.split('.')[1]}_{i:04d}_{i}.jpg"
                pixels = np.empty((SIZE[1], SIZE[0], 3), dtype=np.uint8)
                pixels[:] = WATERBIRDS_BACKGROUNDS[place]
                pixels[4:12, 4:12] = colour(y)
                (root / species).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / name)
                rows.append(f"{i},{name},{y},{code},{place},{WATERBIRDS_PLACES[place]}/{i:08d}.jpg")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
# images per group (g = 2 * blond + male) in each partition (0 train, 1 val, 2 test)
CELEBA_COUNTS = {0: [3, 2, 1, 1], 1: [1, 1, 1, 1], 2: [1, 2, 1, 1]}
# (Blond_Hair -1/1, Male -1/1, partition 0/1/2)
CELEBA_ROWS = [(2 * (g // 2) - 1, 2 * (g % 2) - 1, p) for p, counts in CELEBA_COUNTS.items()
               for g, n in enumerate(counts) for _ in range(n)]


def write_celeba(root: Path, rows=CELEBA_ROWS) -> Path:
    """celeba/: img_align_celeba/000001.jpg ..., list_attr_celeba.txt (count line, header of the 40
    attributes, aligned -1/1 values) and list_eval_partition.txt. Hair colour paints the top half
    of the image (blond: its class colour), sex the bottom."""
    root = Path(root)
    blond, male = CELEBA_ATTRIBUTES.index("Blond_Hair"), CELEBA_ATTRIBUTES.index("Male")
    attr_lines, part_lines = [str(len(rows)), " ".join(CELEBA_ATTRIBUTES)], []
    for k, (b, m, p) in enumerate(rows):
        name = f"{k + 1:06d}.jpg"
        values = ["-1"] * 40
        values[blond], values[male] = str(b), str(m)
        attr_lines.append(f"{name} " + " ".join(f"{v:>2}" for v in values))  # published: aligned
        part_lines.append(f"{name} {p}")
        pixels = np.empty((SIZE[1], SIZE[0], 3), dtype=np.uint8)
        pixels[: SIZE[1] // 2] = colour(int(b == 1))
        pixels[SIZE[1] // 2:] = (200, 170, 150) if m == -1 else (150, 120, 100)
        (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "img_align_celeba" / name)
    (root / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    return root


# ---- transfer sets (root: the folder holding caltech101/, flowers-102/, stanford_cars/, SUN397/) --

# class folder -> images; over 30 so that the test split (after the first 30) has images
CALTECH_COUNTS = {"BACKGROUND_Google": 2, "Faces_easy": 32, "accordion": 31, "car_side": 33}


def write_caltech101(root: Path, counts=CALTECH_COUNTS) -> Path:
    """caltech101/101_ObjectCategories/<class>/image_0001.jpg ...: every published class folder,
    those of `counts` with that many images, the others empty."""
    root = Path(root)
    cats = root / "caltech101" / "101_ObjectCategories"
    for c in transfer.CALTECH_FOLDERS:
        (cats / c).mkdir(parents=True, exist_ok=True)
    for c, n in sorted(counts.items()):
        (cats / c).mkdir(parents=True, exist_ok=True)
        label = transfer.CALTECH_FOLDERS.index(c) if c in transfer.CALTECH_FOLDERS else 101
        for k in range(n):
            jpeg(cats / c / f"image_{k + 1:04d}.jpg", colour(label))
    return root


# image id (1-based) -> class 1 ... 102; and setid.mat's image ids per split
FLOWERS_LABELS = [1, 2, 3] * 4
FLOWERS_SETS = {"trnid": [1, 2, 3, 4, 5, 6], "valid": [7, 8, 9], "tstid": [10, 11, 12]}


def write_flowers102(root: Path, labels=FLOWERS_LABELS, sets=FLOWERS_SETS) -> Path:
    """flowers-102/: jpg/image_00001.jpg ..., imagelabels.mat (labels) and setid.mat (trnid,
    valid, tstid), as published (their md5 differ: torchvision's check cannot pass)."""
    base = Path(root) / "flowers-102"
    base.mkdir(parents=True, exist_ok=True)
    sio.savemat(base / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    sio.savemat(base / "setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in sets.items()})
    for i, label in enumerate(labels, 1):
        jpeg(base / "jpg" / f"image_{i:05d}.jpg", colour(label - 1))
    return Path(root)


CARS_NAMES = transfer.cars_classnames()  # the devkit's 196 names (images of the first three only)
# file name -> class (1-based, as the .mat files)
CARS_TRAIN = {f"{k:05d}.jpg": c for k, c in enumerate([1, 2, 3, 1, 2, 3], 1)}
CARS_TEST = {f"{k:05d}.jpg": c for k, c in enumerate([3, 2, 1, 1], 1)}


def _cars_annotations(files: dict[str, int]) -> np.ndarray:
    fields = [(f, object) for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    return np.array([(0, 0, SIZE[0] - 1, SIZE[1] - 1, c, f) for f, c in files.items()], dtype=fields)


def write_stanford_cars(root: Path, names=CARS_NAMES, train=CARS_TRAIN, test=CARS_TEST) -> Path:
    """stanford_cars/: devkit/{cars_meta,cars_train_annos}.mat, cars_train/, cars_test/ and
    cars_test_annos_withlabels.mat (as torchvision expects)."""
    base = Path(root) / "stanford_cars"
    (base / "devkit").mkdir(parents=True, exist_ok=True)
    sio.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(names, dtype=object)})
    sio.savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": _cars_annotations(train)})
    sio.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": _cars_annotations(test)})
    for folder, files in (("cars_train", train), ("cars_test", test)):
        for f, c in files.items():
            jpeg(base / folder / f, colour(c - 1))
    return Path(root)


SUN_CLASSES = ("a/abbey", "a/apartment_building/outdoor", "b/beach")


def sun_name(cls: str, k: int) -> str:
    """A published-looking file name: sun_ and 16 lower-case letters."""
    rng = np.random.default_rng([k, *map(ord, cls)])
    return "sun_" + "".join(rng.choice(list(string.ascii_lowercase), 16)) + ".jpg"


def sun_class_list(classes=SUN_CLASSES) -> list[str]:
    """ClassName.txt's 397 classes (without the leading "/"): `classes` where they name a class,
    the others made up from CLIP's names ("ice cream parlor" -> "i/ice_cream_parlor"; the real
    file's "/" inside some names reads the same)."""
    given = {transfer.sun_name(c[2:]): c for c in classes}   # "a/abbey": letter/class
    return [given.get(n, f"{n[0]}/{n.replace(' ', '_')}") for n in transfer.sun_classnames()]


def write_sun397(root: Path, classes=SUN_CLASSES, n_train: int = 2, n_test: int = 2,
                 n_other: int = 1, partitions: str | None = "Partitions") -> Path:
    """SUN397/ (ClassName.txt, a/abbey/sun_*.jpg, ...) and, unless `partitions` is None,
    root/<partitions>/{Training,Testing}_01.txt ("/a/abbey/sun_....jpg" lines) listing n_train and
    n_test images per class; n_other more per class are in no partition-1 split."""
    root = Path(root)
    sun = root / "SUN397"
    sun.mkdir(parents=True, exist_ok=True)
    (sun / "ClassName.txt").write_text("".join(f"/{c}\n" for c in sun_class_list(classes)))
    lists = {"Training_01.txt": [], "Testing_01.txt": []}
    for c in classes:
        label = sun_class_list(classes).index(c)
        for k in range(n_train + n_test + n_other):
            name = sun_name(c, k)
            jpeg(sun / c / name, colour(label))
            if k < n_train + n_test:
                lists["Training_01.txt" if k < n_train else "Testing_01.txt"].append(f"/{c}/{name}")
    if partitions is not None:
        (root / partitions).mkdir(parents=True, exist_ok=True)
        for f, lines in lists.items():
            (root / partitions / f).write_text("\n".join(lines) + "\n")
    return root


IMAGEFOLDER_CLASSES = ("blue_jay", "owl", "swan")  # "blue_jay": the reader names it "blue jay"


def write_imagefolder(root: Path, classes=IMAGEFOLDER_CLASSES, n: dict[str, int] | None = None) -> Path:
    """root/{train,val,test}/<class>/*.jpg (the synthetic source world's layout), n[split] images
    per class (default train 2, val 1, test 1)."""
    root = Path(root)
    for split, k in (n or {"train": 2, "val": 1, "test": 1}).items():
        folder_tree(root / split, classes, {c: k for c in classes}, ext=".jpg",
                    colours={c: colour(label) for label, c in enumerate(classes)})
    return root


WRITERS = {
    "imagenet": write_imagenet, "imagenet_v2": write_imagenet_v2,
    "imagenet_sketch": write_imagenet_sketch, "imagenet_r": write_imagenet_r,
    "imagenet_a": write_imagenet_a, "objectnet": write_objectnet, "waterbirds": write_waterbirds,
    "celeba": write_celeba, "caltech101": write_caltech101, "flowers102": write_flowers102,
    "stanford_cars": write_stanford_cars, "sun397": write_sun397, "imagefolder": write_imagefolder,
}


def write_all(base: Path) -> dict[str, Path]:
    """Every reader's tree under base/<reader>/, with its default content: reader -> config root."""
    return {reader: write(Path(base) / reader) for reader, write in WRITERS.items()}
