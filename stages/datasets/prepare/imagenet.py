"""ILSVRC-2012 from the user's three official archives (ImageNet's download needs a login).

Every archive the checked splits need is looked for and checked against torchvision's md5 before
anything is unpacked (`ILSVRC2012_devkit_t12.tar.gz` and `ILSVRC2012_img_val.tar` always,
`ILSVRC2012_img_train.tar` when train is checked). The devkit gives the wnids and the val
images' labels (`parse_devkit`); `ILSVRC2012_img_val.tar` (50,000 images, flat) is extracted and
sorted into one folder per wnid with those labels, as torchvision's `parse_val_archive` sorts it;
`ILSVRC2012_img_train.tar` (1,000 inner tars, one per wnid) is extracted into train/<wnid>/.
Every extraction, the devkit's included, goes through the safe extractor (archives.py):
torchvision's own has no tar filter.
"""

from __future__ import annotations

import os
from pathlib import Path

from .archives import ArchiveError, extract
from .fetch import DownloadError, Remote, verify

PORTAL = "https://image-net.org/download-images.php (login; ILSVRC 2012)"
ALWAYS = ("devkit", "val")   # the wnids, the val labels and ImageNet's evaluated split


def archive_meta() -> dict[str, tuple[str, str]]:
    """torchvision's ILSVRC-2012 archives: {"train" | "val" | "devkit": (file name, md5)}."""
    from torchvision.datasets import imagenet as tv_imagenet

    return dict(tv_imagenet.ARCHIVE_META)


def hand_fetch_line(folder: Path, lost: list[str], splits: list[str]) -> str:
    """The error line for archives missing from `folder`: where to download them by hand, or how to
    point the config at them, and which checked splits need them."""
    them = "them" if len(lost) > 1 else "it"
    return (f"put {', '.join(lost)} in {folder} (download {them} by hand from {PORTAL}; "
            f"or set datasets.<name>.prepare.archives to the folder holding {them}); "
            f"the checked splits ({', '.join(sorted(splits))}) need {them}")


def parse_devkit(devkit: Path, archive: Path) -> tuple[list[str], list[str]]:
    """(the 1000 wnids, the wnid of each val image in file order) from `archive` unpacked in `devkit`:
    `data/meta.mat`'s leaf synsets (no children) map ILSVRC ids to wnids, and
    `data/ILSVRC2012_validation_ground_truth.txt` gives each val image's ILSVRC id. torchvision's
    `parse_devkit_archive` reads the same two files, but only after unpacking the archive itself
    without a filter, hence this reading of the files the safe extractor wrote. ArchiveError names
    the archive when they are not a devkit's."""
    import scipy.io

    data = devkit / "ILSVRC2012_devkit_t12" / "data"
    meta, truth = data / "meta.mat", data / "ILSVRC2012_validation_ground_truth.txt"
    for f in (meta, truth):
        if not f.is_file():
            raise ArchiveError(f"{archive}: no {f.relative_to(devkit)} in it; not ILSVRC2012's devkit")
    synsets = scipy.io.loadmat(meta, squeeze_me=True)["synsets"]
    id_to_wnid = {int(s[0]): str(s[1]) for s in synsets if int(s[4]) == 0}
    labels = truth.read_text().split()
    unknown = sorted({i for i in labels if int(i) not in id_to_wnid})
    if unknown:
        raise ArchiveError(f"{archive}: {truth.name} names ILSVRC ids {unknown[:3]}, no class of meta.mat")
    return sorted(id_to_wnid.values()), [id_to_wnid[int(i)] for i in labels]


def _check_archives(archives: Path, splits: list[str], key: str) -> list[str]:
    """The archives to unpack ("devkit", "val", and "train" when its archive is there), each checked
    against torchvision's md5; FileNotFoundError naming those the checked splits need and lack."""
    meta = archive_meta()
    needed = [*ALWAYS, *(["train"] if "train" in splits else [])]
    lost = [meta[k][0] for k in needed if not (archives / meta[k][0]).is_file()]
    if lost:
        raise FileNotFoundError(hand_fetch_line(archives, lost, sorted({*splits, "val"})))
    present = [k for k in ("devkit", "val", "train") if (archives / meta[k][0]).is_file()]
    for k in present:
        name, md5 = meta[k]
        path = archives / name
        try:
            verify(path, Remote(url=str(path), key=f"{key}.archives", name=name, md5=md5))
        except DownloadError as e:
            raise DownloadError(f"{e} (torchvision's); the file is kept: replace {path} with a complete copy "
                                f"from {PORTAL}") from None
    return present


def build_imagenet(archives: Path, work: Path, key: str, splits: list[str] | None = None) -> Path:
    """<tree>/val/<wnid>/*.JPEG and, when its archive is there, <tree>/train/<wnid>/*.JPEG; the
    archives of the checked `splits` (default val) must be there and intact before any is unpacked."""
    meta = archive_meta()
    present = _check_archives(archives, list(splits or ["val"]), key)
    tree = work / "imagenet"
    tree.mkdir(parents=True)
    devkit = archives / meta["devkit"][0]
    wnids, val_wnids = parse_devkit(extract(devkit, work / "devkit"), devkit)
    val = extract(archives / meta["val"][0], tree / "val")
    images = sorted(p for p in val.iterdir() if p.is_file())
    if len(images) != len(val_wnids):
        raise ArchiveError(f"{archives / meta['val'][0]}: {len(images)} images, but the devkit labels "
                         f"{len(val_wnids)}")
    # every wnid of the devkit gets its folder, as in the published set (torchvision makes
    # those of the val labels only; the same 1000 there)
    for wnid in wnids:
        (val / wnid).mkdir()
    for wnid, image in zip(val_wnids, images):
        os.replace(image, val / wnid / image.name)
    if "train" in present:
        train = extract(archives / meta["train"][0], tree / "train")
        for inner in sorted(train.glob("*.tar")):
            extract(inner, train / inner.stem)
            inner.unlink()
        for wnid in wnids:
            (train / wnid).mkdir(exist_ok=True)
    return tree
