"""Data sets whose publisher's copy is gone or behind a form, from a mirror on the HF hub.

The mirror is fetched with huggingface_hub (resumable, cached in the hub's own cache, revision
pinned to a commit in the config) and converted into the layout the reader reads. Both mirrors
used here are Parquet files written by the `datasets` library, which records the features (which
column is the image, which the class label and its names) in the files' schema metadata; the
converters read them from there instead of guessing column names. Rows are read in batches, so
memory stays bounded for CelebA's 202,599 images.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .layouts import PublishedLayoutError

BATCH = 512
# CelebA's partition numbers (list_eval_partition.txt) and the mirror's split names for them
CELEBA_SPLITS = {"train": 0, "valid": 1, "validation": 1, "val": 1, "test": 2}
CARS_SPLITS = ("train", "test")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def snapshot(spec: dict, key: str) -> Path:
    """The mirror's files at the pinned revision (downloaded, or from the cache)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    hub = spec["hub"]
    try:
        return Path(snapshot_download(hub["repo"], repo_type=hub.get("repo_type", "dataset"),
                                      revision=hub["revision"], allow_patterns=hub.get("files")))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise PublishedLayoutError(f"{key}.hub: {hub['repo']}@{hub['revision']} could not be fetched "
                                   f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from e


def parquet_files(folder: Path, split: str) -> list[Path]:
    """The split's Parquet shards (`<split>-00000-of-00003.parquet` or `<split>/0000.parquet`)."""
    found = sorted(p for p in folder.rglob("*.parquet")
                   if p.name.startswith(f"{split}-") or p.parent.name == split)
    return found


def features(path: Path) -> dict:
    """The `datasets` features recorded in a Parquet file ({column: feature})."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    try:
        return json.loads(meta[b"huggingface"])["info"]["features"]
    except (KeyError, ValueError) as e:
        raise PublishedLayoutError(f"{path}: no `datasets` features in its schema metadata; expected a "
                                   "Parquet file written by the datasets library") from e


def columns_of(path: Path, kind: str) -> list[str]:
    """The columns of a Parquet file whose `datasets` feature is of type `kind` ("Image", "ClassLabel")."""
    return [c for c, f in features(path).items() if isinstance(f, dict) and f.get("_type") == kind]


def batches(path: Path, columns: list[str]):
    """The file's rows in batches of BATCH, each as {column: list of values} for `columns` only."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH, columns=columns):
        yield batch.to_pydict()


def image_bytes(value, where: str) -> tuple[bytes, str]:
    """(bytes, extension) of a `datasets` Image cell ({"bytes", "path"})."""
    if not isinstance(value, dict) or not value.get("bytes"):
        raise PublishedLayoutError(f"{where}: an image cell without bytes")
    suffix = Path(value.get("path") or "").suffix.lower()
    if suffix not in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
        data = value["bytes"]
        suffix = ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg"
    return value["bytes"], suffix


def build_celeba(snapshot_dir: Path, work: Path) -> Path:
    """img_align_celeba/<id>.jpg, list_attr_celeba.txt and list_eval_partition.txt from a mirror
    holding one row per image: the image, bool attribute columns named as CelebA's, split by
    file name. Images keep their original file name where the mirror records it; otherwise
    they are numbered 000001.jpg ... in split order (train, valid, test), CelebA's own numbering."""
    tree = work / "tree"
    images = tree / "img_align_celeba"
    images.mkdir(parents=True)
    header, rows, partition, number = None, [], [], 0
    for split in ("train", "valid", "validation", "val", "test"):
        for path in parquet_files(snapshot_dir, split):
            feats = features(path)
            image_col = columns_of(path, "Image")
            attrs = [c for c, f in feats.items() if isinstance(f, dict) and f.get("dtype") == "bool"]
            if len(image_col) != 1 or not attrs:
                raise PublishedLayoutError(f"{path}: expected one Image column and bool attribute "
                                           f"columns, found {list(feats)}")
            if header is None:
                header = attrs
            elif attrs != header:
                raise PublishedLayoutError(f"{path}: attribute columns differ from the first shard's")
            for batch in batches(path, image_col + attrs):
                for i, cell in enumerate(batch[image_col[0]]):
                    number += 1
                    data, _ = image_bytes(cell, str(path))
                    given = Path((cell or {}).get("path") or "").name
                    name = given if re.fullmatch(r"\d{6}\.jpg", given) else f"{number:06d}.jpg"
                    (images / name).write_bytes(data)
                    rows.append(name + " " + " ".join("1" if batch[a][i] else "-1" for a in attrs))
                    partition.append(f"{name} {CELEBA_SPLITS[split]}")
    if header is None:
        raise PublishedLayoutError(f"{snapshot_dir}: no train/valid/test Parquet shards")
    (tree / "list_attr_celeba.txt").write_text(f"{len(rows)}\n{' '.join(header)}\n" + "\n".join(rows) + "\n")
    (tree / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return tree


def build_stanford_cars(snapshot_dir: Path, work: Path) -> Path:
    """stanford_cars/{cars_train,cars_test}/<n>.jpg, devkit/cars_meta.mat (class names),
    devkit/cars_train_annos.mat and cars_test_annos_withlabels.mat (file name, 1-based class),
    as torchvision.datasets.StanfordCars reads them, from a mirror with an Image and a
    ClassLabel column (whose names become the class names)."""
    import scipy.io

    base = work / "tree" / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    names = None
    for split in CARS_SPLITS:
        shards = parquet_files(snapshot_dir, split)
        if not shards:
            raise PublishedLayoutError(f"{snapshot_dir}: no Parquet shards of split {split!r}")
        folder = base / f"cars_{split}"
        folder.mkdir()
        fnames, labels = [], []
        for path in shards:
            image_col, label_col = columns_of(path, "Image"), columns_of(path, "ClassLabel")
            if len(image_col) != 1 or len(label_col) != 1:
                raise PublishedLayoutError(f"{path}: expected one Image and one ClassLabel column, "
                                           f"found {list(features(path))}")
            shard_names = features(path)[label_col[0]]["names"]
            if names is None:
                names = shard_names
            elif shard_names != names:
                raise PublishedLayoutError(f"{path}: class names differ from the first shard's")
            for batch in batches(path, image_col + label_col):
                for cell, label in zip(batch[image_col[0]], batch[label_col[0]]):
                    data, suffix = image_bytes(cell, str(path))
                    name = f"{len(fnames) + 1:05d}{suffix}"
                    (folder / name).write_bytes(data)
                    fnames.append(name)
                    labels.append(int(label) + 1)
        annotations = np.array(list(zip(fnames, labels)), dtype=[("fname", object), ("class", np.int64)])
        mat = base / "devkit" / "cars_train_annos.mat" if split == "train" else base / "cars_test_annos_withlabels.mat"
        scipy.io.savemat(mat, {"annotations": annotations})
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(names, dtype=object)})
    return work / "tree"


BUILDERS = {"celeba": build_celeba, "stanford_cars": build_stanford_cars}
