"""ILSVRC-2012 from the user's three official archives (ImageNet's download needs a login).

`ILSVRC2012_devkit_t12.tar.gz` is parsed by torchvision (`parse_devkit_archive`: the wnids and
the val images' labels, into meta.bin); `ILSVRC2012_img_val.tar` (50,000 images, flat) is
extracted and sorted into one folder per wnid with those labels, as torchvision's
`parse_val_archive` sorts it; `ILSVRC2012_img_train.tar` (1,000 inner tars, one per wnid) is
extracted into train/<wnid>/. Each archive is checked against torchvision's md5 first, and every
extraction goes through the safe extractor (torchvision's own has no tar filter).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .archives import extract
from .fetch import Remote, verify

PORTAL = "https://image-net.org/download-images.php (login; ILSVRC 2012)"


def archive_meta() -> dict[str, tuple[str, str]]:
    """torchvision's ILSVRC-2012 archives: {"train" | "val" | "devkit": (file name, md5)}."""
    from torchvision.datasets import imagenet as tv_imagenet

    return dict(tv_imagenet.ARCHIVE_META)


def hand_fetch_line(folder: Path, lost: list[str]) -> str:
    """The error line for archives missing from `folder`: where to download them by hand, or how to
    point the config at them."""
    return (f"put {', '.join(lost)} in {folder} (download them by hand from {PORTAL}; "
            "or set datasets.<name>.prepare.archives to the folder holding them)")


def build_imagenet(archives: Path, work: Path, key: str) -> Path:
    """<tree>/val/<wnid>/*.JPEG and, when its archive is there, <tree>/train/<wnid>/*.JPEG."""
    from torchvision.datasets import imagenet as tv_imagenet

    meta = archive_meta()
    lost = [meta[k][0] for k in ("devkit", "val") if not (archives / meta[k][0]).is_file()]
    if lost:
        raise FileNotFoundError(hand_fetch_line(archives, lost))
    present = [k for k in ("devkit", "val", "train") if (archives / meta[k][0]).is_file()]
    for k in present:
        name, md5 = meta[k]
        verify(archives / name, Remote(url=str(archives / name), key=f"{key}.archives", name=name, md5=md5))
    tree = work / "imagenet"
    tree.mkdir(parents=True)
    # torchvision reads the devkit from the data set's root and unpacks it in a temporary folder:
    # point both at the work folder, so that nothing is written outside it
    os.symlink((archives / meta["devkit"][0]).resolve(), tree / meta["devkit"][0])
    saved = tempfile.tempdir
    tempfile.tempdir = str(work)
    try:
        tv_imagenet.parse_devkit_archive(str(tree))
    finally:
        tempfile.tempdir = saved
        (tree / meta["devkit"][0]).unlink()
    wnid_to_classes, val_wnids = tv_imagenet.load_meta_file(str(tree))
    val = extract(archives / meta["val"][0], tree / "val")
    images = sorted(p for p in val.iterdir() if p.is_file())
    if len(images) != len(val_wnids):
        raise ValueError(f"{archives / meta['val'][0]}: {len(images)} images, but the devkit labels "
                         f"{len(val_wnids)}")
    # every wnid of the devkit gets its folder, as in the published set (torchvision makes
    # those of the val labels only; the same 1000 there)
    for wnid in wnid_to_classes:
        (val / wnid).mkdir()
    for wnid, image in zip(val_wnids, images):
        os.replace(image, val / wnid / image.name)
    if "train" in present:
        train = extract(archives / meta["train"][0], tree / "train")
        for inner in sorted(train.glob("*.tar")):
            extract(inner, train / inner.stem)
            inner.unlink()
        for wnid in wnid_to_classes:
            (train / wnid).mkdir(exist_ok=True)
    return tree  # with torchvision's meta.bin (wnid -> class names), which the reader ignores
