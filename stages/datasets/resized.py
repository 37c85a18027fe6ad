"""A prepared copy of a training split with its images pre-resized (short side 256, JPEG quality
90), read by the fine-tune stage's loader instead of the originals: decoding a 256 px JPEG costs a
fraction of ImageNet's ~500x375 ones (bench/loader.py prints both, side by side).

    python -m stages.datasets.resized --reader imagenet --root data/imagenet --split train \\
        --out data/imagenet/resized_train --workers 16

The copy keeps the split's relative layout (`<out>/<wnid>/<file>.JPEG` for ImageNet's train/),
one file per sample, and a manifest `resized.parquet` in sample order: the relative path, the
original's width and height and the copy's. The loader reads it as an ImageList
(`ResizedImages`) whose file list, labels and order are the original split's and only the pixels
the copy's; with the original's size from the manifest (`source_size`) it draws each sample's crop
box in the original's pixels, from the same seeds, and cuts the same relative region of the copy
(stages.finetune.trainset).

Writing: one pass over the split's files (cost linear in images, memory a few ints per image),
parallel over `workers` processes, with a progress bar. Files go to `<out>.partial/` (each file
written under a `.part` name, then renamed), which a rerun resumes, skipping the files already
there; the folder is renamed to `<out>` only when every file is written and the manifest is
complete. Originals whose short side is <= `short_side` are copied byte for byte (checked to
decode first); an unreadable image stops the copy with one error naming the file.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..common.io import versions, write_json
from ..common.progress import progress
from .base import BAD_IMAGE, ClassificationSet, ImageList

MANIFEST, RECORD, PARAMS = "resized.parquet", "resized.json", ".params.json"
SHORT_SIDE, QUALITY = 256, 90
CHUNK = 64   # files per task handed to a writing process


class ResizedCopyError(ValueError):
    """A prepared copy cannot be written or read: the message names the file or folder."""


def sample_files(images: ClassificationSet) -> list[str]:
    """Every sample's file relative to the split's root (`images.root`), in item order."""
    prefix = os.fsencode(str(images.root)) + os.fsencode(os.sep)
    return [os.fsdecode(p[len(prefix):] if p.startswith(prefix) else
                        os.fsencode(os.path.relpath(os.fsdecode(p), images.root)))
            for p in images.dataset.paths]


def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side `short_side` and the aspect ratio kept; unchanged when
    the short side is already <= `short_side` (never enlarged)."""
    short = min(width, height)
    if short <= short_side:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def resize_file(src: str, dst: str, short_side: int, quality: int) -> tuple[int, int, int, int]:
    """Write the copy of one image; (width, height) of the original and of the copy. A file
    already at `dst` (a resumed copy: files appear only complete, by rename) is kept."""
    try:
        if os.path.exists(dst):
            with Image.open(src) as a, Image.open(dst) as b:   # headers only: no decoding
                return (*a.size, *b.size)
        with Image.open(src) as im:
            original = im.size
            size = target_size(*original, short_side)
            # JPEG's DCT scaling decodes at 1/2, 1/4, 1/8 when that still leaves >= 2x the target
            # (Image.thumbnail's reducing_gap): large originals decode several times faster
            im.draft(None, (2 * size[0], 2 * size[1]))
            im.load()   # decoded in full even when copied as it is: a bad file fails here
            part = dst + ".part"
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                if size == original:
                    shutil.copyfile(src, part)   # small enough already: the original's bytes, no loss
                else:
                    out = im if im.mode in ("RGB", "L") else im.convert("RGB")
                    out.resize(size, Image.LANCZOS).save(part, format="JPEG", quality=quality)
                os.replace(part, dst)
            finally:
                if os.path.exists(part):
                    os.unlink(part)
            return (*original, *size)
    except BAD_IMAGE as e:   # one line naming the file, not a worker's traceback
        raise ResizedCopyError(f"{src}: unreadable image ({e.__class__.__name__}: {e})") from None


def _resize_chunk(task) -> list[tuple[int, int, int, int]]:
    srcs, dsts, short_side, quality = task
    return [resize_file(s, d, short_side, quality) for s, d in zip(srcs, dsts)]


def write_resized(images: ClassificationSet, out: str | Path, short_side: int = SHORT_SIDE,
                  quality: int = QUALITY, workers: int | None = None) -> dict:
    """Write the resized copy of one opened split to `out` (see the module's docstring); returns
    its record. An `out` already complete with these settings is kept as it is."""
    out = Path(out)
    params = {"short_side": short_side, "quality": quality, "dataset": images.name, "split": images.split,
              "source": str(images.root), "n": len(images.dataset)}
    if out.exists():
        record = _read_record(out)
        if {k: record.get(k) for k in params} == params:
            return record
        raise ResizedCopyError(f"{out} exists with other settings ({ {k: record.get(k) for k in params} }); "
                               f"remove it to write the copy with {params}")
    tmp = out.with_name(out.name + ".partial")
    settings = {k: v for k, v in params.items() if k != "n"}   # files added since: resumed all the same
    if tmp.exists():
        try:
            same = json.loads((tmp / PARAMS).read_text()) == settings
        except (OSError, ValueError):
            same = False
        if not same:   # a copy begun with other settings (or another split): start again
            shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / PARAMS).write_text(json.dumps(settings))

    files = sample_files(images)
    sizes = np.zeros((len(files), 4), dtype=np.int32)
    tasks = ([[str(images.root / f) for f in files[k:k + CHUNK]], [str(tmp / f) for f in files[k:k + CHUNK]],
              short_side, quality] for k in range(0, len(files), CHUNK))
    workers = workers or os.cpu_count() or 1
    bar = progress(total=len(files), desc=f"resizing {images.name} {images.split}", unit="img")
    pool = multiprocessing.get_context("fork").Pool(workers)
    try:
        for k, chunk in enumerate(pool.imap(_resize_chunk, tasks)):
            sizes[k * CHUNK:k * CHUNK + len(chunk)] = chunk
            bar.update(len(chunk))
    except BaseException:
        pool.terminate()
        pool.join()
        # the other workers were stopped mid-file: their `.part` files go (the rerun resumes from
        # the complete ones)
        for path in _files(tmp):
            if path.name.endswith(".part"):
                path.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    pool.close()
    pool.join()
    pd.DataFrame({"path": files, "width": sizes[:, 0], "height": sizes[:, 1], "resized_width": sizes[:, 2],
                  "resized_height": sizes[:, 3]}).to_parquet(tmp / MANIFEST, index=False)
    record = {**params, "resized": int((sizes[:, :2] != sizes[:, 2:]).any(axis=1).sum()),
              "bytes": int(sum(e.stat().st_size for e in _files(tmp))), "versions": versions()}
    write_json(tmp / RECORD, record)   # the last file: its presence marks the copy complete
    (tmp / PARAMS).unlink()
    os.replace(tmp, out)
    return record


def _files(root: Path):
    for folder, _, names in os.walk(root):
        for n in names:
            yield Path(folder) / n


def _read_record(root: Path) -> dict:
    path = Path(root) / RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ResizedCopyError(f"{path} missing or unreadable ({e.__class__.__name__}): {root} is not a complete "
                               "resized copy; remove it and write it again (README, 'Keeping the GPU fed')") from None


class ResizedImages(ImageList):
    """An opened split's samples with the images read from its resized copy at `root`: labels,
    attributes and order are the original split's; `source_size(i)` is the original's
    (width, height), from which the crop box of sample i is drawn. The copy is checked against the
    split (same files, same order) before any image is read."""

    def __init__(self, images: ClassificationSet, root: str | Path):
        root = Path(root)
        if not root.is_dir():
            raise ResizedCopyError(f"{root} not found: write the resized copy first (README, 'Keeping the GPU "
                                   f"fed': snakemake --cores N {root})")
        record = _read_record(root)
        if record.get("split") != images.split:
            raise ResizedCopyError(f"{root} is a copy of split {record.get('split')!r}, not {images.split!r}")
        manifest = pd.read_parquet(root / MANIFEST)
        files = sample_files(images)
        listed = manifest["path"].tolist()
        if listed != files:
            k = next((k for k, (a, b) in enumerate(zip(listed, files)) if a != b), min(len(listed), len(files)))
            which = files[k] if k < len(files) else listed[k]
            raise ResizedCopyError(f"{root / MANIFEST}: sample {k} ({which}) differs from {images.root}'s "
                                   f"{images.split} split ({len(listed)} files in the copy, {len(files)} in the "
                                   "original): the originals changed since the copy was written; write it again")
        labels, attributes = images.labels_and_attributes()
        super().__init__(list(zip((str(root / f) for f in files), labels.tolist(), attributes.tolist())),
                         source_sizes=manifest[["width", "height"]].to_numpy(np.int32))
        self.root = root


def main(argv=None) -> None:
    """The command line: write a resized copy of one split (`write_resized`) and print its size."""
    from . import open as open_reader

    p = argparse.ArgumentParser(prog="python -m stages.datasets.resized",
                                description="Write a resized copy of one split for the training loader.")
    p.add_argument("--reader", required=True)
    p.add_argument("--root", required=True, help="the folder the reader reads (the data set's root)")
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True, help="the copy's folder (written as <out>.partial, then renamed)")
    p.add_argument("--short-side", type=int, default=SHORT_SIDE)
    p.add_argument("--quality", type=int, default=QUALITY)
    p.add_argument("--workers", type=int, default=0, help="writing processes (0: every core)")
    a = p.parse_args(argv)
    try:
        record = write_resized(open_reader(a.reader, a.root, a.split), a.out, a.short_side, a.quality,
                               a.workers or None)
    except (ResizedCopyError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(f"{a.out}: {record['n']} images, {record['resized']} resized to short side {a.short_side}, "
          f"{record['bytes'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
