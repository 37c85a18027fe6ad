"""Waterbirds (Sagawa et al., 2020) and any data set in its on-disk layout: `metadata.csv` plus images.

metadata.csv columns: img_id, img_filename, y, split, place, place_filename; split 0/1/2 =
train/val/test; y = class index; place = spurious attribute (Waterbirds: 0 land, 1 water);
groups as every data set's (base.group_index: 0 landbird/land ... 3 waterbird/water). A split is
the `ImageList` of its rows (root / img_filename, y, place). The synthetic world's SynthBirds is
written in this layout and read by the same reader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .base import ClassificationSet, DataError, DatasetLayoutError, ImageList, check_split, group_index, missing

COLUMNS = ("img_id", "img_filename", "y", "split", "place", "place_filename")
SPLITS = {"train": 0, "val": 1, "test": 2}
N_PLACES = 2

WATERBIRDS_FOLDER = "waterbird_complete95_forest2water2"
URL = "https://github.com/kohpangwei/group_DRO (waterbird_complete95_forest2water2.tar.gz)"
CLASSNAMES = ["landbird", "waterbird"]
PLACES = ["land", "water"]
# the released zero-shot prompt alone (StarFT's and the group-robustness papers' Waterbirds template)
TEMPLATES = ["This is a picture of a {}."]


def read_metadata(root: str | Path, check_images: bool = False) -> pd.DataFrame:
    """Read and validate `root/metadata.csv`; raise DataError naming the file, column or row."""
    root = Path(root)
    path = root / "metadata.csv"
    if not path.is_file():
        raise DataError(
            f"{path} not found: put the extracted `{WATERBIRDS_FOLDER}/` folder (the one holding "
            f"metadata.csv) at {root}, or fetch it with `snakemake --cores 1 data/waterbirds/prepared`")
    try:
        df = pd.read_csv(path)
    except Exception as e:  # pandas raises several types for unreadable CSV
        raise DataError(f"{path}: unreadable CSV ({e})") from e
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected {list(COLUMNS)}")
    for col in ("y", "split", "place"):
        bad = pd.to_numeric(df[col], errors="coerce").isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: row {row + 2} (line), column {col!r}: not an integer: {df[col].iloc[row]!r}")
        df[col] = df[col].astype(int)
    bad = ~df["split"].isin(SPLITS.values())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: line {row + 2}: split must be 0, 1 or 2, got {df['split'].iloc[row]}")
    bad = ~df["place"].isin(range(N_PLACES))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: line {row + 2}: place must be 0 or 1, got {df['place'].iloc[row]}")
    if check_images:
        for i, name in enumerate(df["img_filename"]):
            img = root / name
            try:
                with Image.open(img) as im:
                    im.verify()
            except Exception as e:
                raise DataError(f"{path}: line {i + 2}: image {img} missing or unreadable ({e.__class__.__name__})") from e
    df["group"] = group_index(df["y"], df["place"], N_PLACES)
    return df


def open_waterbirds(root, split, transform=None) -> ClassificationSet:
    """One split of a Waterbirds-layout folder (`metadata.csv` and the images it lists): its rows
    as an ImageList, two classes, two places, four groups."""
    check_split("waterbirds", split, tuple(SPLITS))
    root = Path(root)
    if not (root / "metadata.csv").is_file():
        raise missing(root, f"the extracted {WATERBIRDS_FOLDER}/ folder (metadata.csv and "
                      "the image folders)", URL)
    try:
        df = read_metadata(root)
    except DataError as e:   # the layout's file, refused as the other readers refuse theirs
        raise DatasetLayoutError(str(e)) from e
    rows = df[df["split"] == SPLITS[split]]
    samples = zip((str(root / f) for f in rows["img_filename"]), rows["y"].tolist(), rows["place"].tolist())
    return ClassificationSet(
        name="waterbirds", root=root, split=split, dataset=ImageList(list(samples), transform),
        classnames=CLASSNAMES, templates=TEMPLATES, n_attributes=len(PLACES),
        group_names=[f"{c} on {p}" for c in CLASSNAMES for p in PLACES])
