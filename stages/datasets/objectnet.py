"""ObjectNet 1.0, scored on its classes that overlap ImageNet (113 in the published mappings).

Layout as published (objectnet-1.0/): images/<folder>/*.png and mappings/ holding
folder_to_objectnet_label.json (folder -> ObjectNet label), objectnet_to_imagenet_1k.json
(ObjectNet label -> "ImageNet name; ImageNet name"), imagenet_to_label_2012_v2 (line i: the
ImageNet name of ILSVRC-2012 id i) and pytorch_to_imagenet_2012_id.json (sorted-wnid index ->
ILSVRC-2012 id). The chain folder -> ObjectNet label -> ImageNet names -> ILSVRC id -> sorted-wnid
index is the one the reference readers (WiSE-FT, model soups, FLYP) follow, through these files.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from . import imagenet
from .base import (ClassificationSet, DatasetLayoutError, ImageList, check_split, missing, scan,
                   subfolders)

URL = "https://objectnet.dev"
MAPPINGS = ("folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json",
            "imagenet_to_label_2012_v2", "pytorch_to_imagenet_2012_id.json")
BORDER = 2


def crop_border(image):
    """ObjectNet images carry a 1-pixel red border; like the reference readers (WiSE-FT's and
    model soups' `crop`, 2 pixels each side) cut 2 pixels from every side, which also drops the
    resampling blur next to the border."""
    w, h = image.size
    return image.crop((BORDER, BORDER, w - BORDER, h - BORDER))


def read_mappings(root: Path) -> tuple[list[str], list[str], list[list[int]]]:
    """(folders, ObjectNet class names, ImageNet indices of each), classes sorted by folder."""
    folder = root / "mappings"
    lost = [m for m in MAPPINGS if not (folder / m).is_file()]
    if lost:
        raise DatasetLayoutError(
            f"{folder}: missing ObjectNet mapping file(s) {', '.join(lost)}; expected the "
            f"published objectnet-1.0/mappings/ folder with {', '.join(MAPPINGS)}")
    try:
        folder_to_label = json.loads((folder / MAPPINGS[0]).read_text())
        label_to_names = json.loads((folder / MAPPINGS[1]).read_text())
        names_by_id = [ln.rstrip("\n") for ln in (folder / MAPPINGS[2]).read_text().splitlines()]
        index_to_id = json.loads((folder / MAPPINGS[3]).read_text())
        id_to_index = {int(i): int(p) for p, i in index_to_id.items()}
        name_to_index = {name: id_to_index[i] for i, name in enumerate(names_by_id)}
    except (ValueError, KeyError) as e:
        raise DatasetLayoutError(f"{folder}: unreadable or inconsistent mapping files ({e!r})") from e
    label_to_folder = {label: f for f, label in folder_to_label.items()}
    classes = []
    for label, names in label_to_names.items():
        if label not in label_to_folder:
            raise DatasetLayoutError(f"{folder / MAPPINGS[1]}: ObjectNet label {label!r} has no "
                                     f"folder in {MAPPINGS[0]}")
        unknown = [n for n in names.split("; ") if n not in name_to_index]
        if unknown:
            raise DatasetLayoutError(f"{folder / MAPPINGS[1]}: {label!r} maps to ImageNet name(s) "
                                     f"{unknown} not in {MAPPINGS[2]}")
        classes.append((label_to_folder[label], label.lower(),
                        sorted(name_to_index[n] for n in names.split("; "))))
    classes.sort()
    return [c[0] for c in classes], [c[1] for c in classes], [c[2] for c in classes]


def project(logits: torch.Tensor, head_indices: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """ImageNet logits [N, 1000] -> ObjectNet logits [N, C]: the max over each class's ImageNet
    classes (as WiSE-FT's project_logits)."""
    return torch.stack([logits[:, list(idx)].max(dim=1).values for idx in head_indices], dim=1)


def open_objectnet(root, split, transform=None) -> ClassificationSet:
    """ObjectNet's images of its ImageNet-overlapping classes, 2-pixel border cropped: labels index the
    ObjectNet classes, scored through the ImageNet head (`project`). Raises DatasetMissing or
    DatasetLayoutError naming the folder or mapping file."""
    check_split("objectnet", split, imagenet.TEST_ONLY)
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "ObjectNet's extracted objectnet-1.0/ folder (images/, mappings/)", URL)
    images = root / "images"
    if not images.is_dir():
        raise DatasetLayoutError(f"{images} not found: expected objectnet-1.0/images/<folder>/*.png")
    folders, names, head_indices = read_mappings(root)
    known = set(json.loads((root / "mappings" / MAPPINGS[0]).read_text()))
    found = subfolders(images)
    lost = sorted(set(folders) - set(found))
    if lost:
        raise DatasetLayoutError(f"{images}: {len(lost)} of the {len(folders)} ImageNet-overlapping "
                                 f"class folders missing (e.g. {', '.join(lost[:3])})")
    extra = sorted(set(found) - known)
    if extra:
        raise DatasetLayoutError(f"{images}: folder(s) {', '.join(extra[:3])} not in "
                                 f"mappings/{MAPPINGS[0]}")
    # folders outside the overlap are not read: scan sees only class_to_idx's folders
    samples = scan(images, {f: i for i, f in enumerate(folders)}, "ObjectNet class")
    return ClassificationSet(
        name="objectnet", root=root, split=split,
        dataset=ImageList([(p, y, -1) for p, y in samples], transform, crop=crop_border),
        classnames=imagenet.classnames(), templates=imagenet.templates(), label_names=names,
        project_logits=functools.partial(project, head_indices=tuple(map(tuple, head_indices))))
