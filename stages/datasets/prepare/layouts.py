"""From a data set's published files (downloaded and checked) to the tree its reader reads.

One builder per reader: `build(files, work, spec) -> tree`, where `files` maps each published
file's name to its local path, `work` is a scratch folder beside the data set's root (so that the
finished tree is renamed into place on the same file system) and `tree` the folder, inside
`work`, that becomes the root.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .archives import extract


class PublishedLayoutError(ValueError):
    """The published files do not hold what the builder expects (a moved or renamed release)."""


def need(files: dict[str, Path], name: str, dataset: str) -> Path:
    """The local path of the published file `name`; PublishedLayoutError when it is not among `files`."""
    if name not in files:
        raise PublishedLayoutError(f"{dataset}: the published file {name!r} is not among prepare.files "
                                   f"({', '.join(files) or 'none'})")
    return files[name]


def inner(folder: Path, name: str, archive: Path) -> Path:
    """The top folder `name` of an archive extracted into `folder`; PublishedLayoutError naming the
    archive and what it holds instead when it is not there."""
    found = folder / name
    if not found.is_dir():
        raise PublishedLayoutError(f"{archive}: holds no top folder {name!r} (found "
                                   f"{', '.join(sorted(p.name for p in folder.iterdir())[:5]) or 'nothing'})")
    return found


def single_folder(archive_name: str, folder: str, dataset: str):
    """A builder for a set published as one archive holding its root as a top folder."""
    def build(files: dict[str, Path], work: Path, spec: dict) -> Path:
        archive = need(files, archive_name, dataset)
        return inner(extract(archive, work / "extracted", spec.get("password")), folder, archive)
    build.__name__ = f"build_{dataset}"
    return build


def build_caltech101(files, work: Path, spec) -> Path:
    """caltech-101.zip holds caltech-101/101_ObjectCategories.tar.gz (and the annotations);
    the reader reads <root>/caltech101/101_ObjectCategories/."""
    archive = need(files, "caltech-101.zip", "caltech101")
    outer = inner(extract(archive, work / "zip"), "caltech-101", archive)
    images = outer / "101_ObjectCategories.tar.gz"
    if not images.is_file():
        raise PublishedLayoutError(f"{archive}: no caltech-101/101_ObjectCategories.tar.gz inside")
    tree = work / "tree"
    inner(extract(images, tree / "caltech101"), "101_ObjectCategories", images)
    return tree


def build_flowers102(files, work: Path, spec) -> Path:
    """102flowers.tgz (jpg/), imagelabels.mat and setid.mat side by side in <root>/flowers-102/."""
    tree = work / "tree"
    folder = tree / "flowers-102"
    archive = need(files, "102flowers.tgz", "flowers102")
    inner(extract(archive, folder), "jpg", archive)
    for name in ("imagelabels.mat", "setid.mat"):
        shutil.copyfile(need(files, name, "flowers102"), folder / name)
    return tree


def build_sun397(files, work: Path, spec) -> Path:
    """SUN397.tar.gz (SUN397/) and the official partitions (Partitions.zip: Training_01.txt ...)
    into <root>/SUN397/ and <root>/SUN397/Partitions/."""
    tree = work / "tree"
    archive = need(files, "SUN397.tar.gz", "sun397")
    folder = inner(extract(archive, tree), "SUN397", archive)
    partitions = need(files, "Partitions.zip", "sun397")
    listed = sorted(extract(partitions, work / "partitions").rglob("Training_01.txt"))
    if not listed:
        raise PublishedLayoutError(f"{partitions}: no Training_01.txt inside")
    shutil.move(str(listed[0].parent), folder / "Partitions")
    return tree


BUILDERS: dict[str, Callable[[dict, Path, dict], Path]] = {
    "waterbirds": single_folder("waterbird_complete95_forest2water2.tar.gz",
                                "waterbird_complete95_forest2water2", "waterbirds"),
    "imagenet_v2": single_folder("imagenetv2-matched-frequency.tar.gz",
                                 "imagenetv2-matched-frequency-format-val", "imagenet_v2"),
    "imagenet_sketch": single_folder("ImageNet-Sketch.zip", "sketch", "imagenet_sketch"),
    "imagenet_r": single_folder("imagenet-r.tar", "imagenet-r", "imagenet_r"),
    "imagenet_a": single_folder("imagenet-a.tar", "imagenet-a", "imagenet_a"),
    "objectnet": single_folder("objectnet-1.0.zip", "objectnet-1.0", "objectnet"),
    "caltech101": build_caltech101,
    "flowers102": build_flowers102,
    "sun397": build_sun397,
}
