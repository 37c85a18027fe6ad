"""Datasets in the Waterbirds on-disk layout: `metadata.csv` plus images.

metadata.csv columns: img_id, img_filename, y, split, place, place_filename; split 0/1/2 =
train/val/test; y = class index; place = spurious attribute (Waterbirds: 0 land, 1 water).
Groups are g = n_places * y + place (Waterbirds: 0 landbird/land ... 3 waterbird/water).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

COLUMNS = ("img_id", "img_filename", "y", "split", "place", "place_filename")
SPLITS = {"train": 0, "val": 1, "test": 2}
N_PLACES = 2

WATERBIRDS_FOLDER = "waterbird_complete95_forest2water2"


class DataError(ValueError):
    """Bad data on disk: the message names the file and, where it applies, the row or column."""


def group_of(y, place, n_places: int = N_PLACES):
    return y * n_places + place


def read_metadata(root: str | Path, check_images: bool = False) -> pd.DataFrame:
    """Read and validate `root/metadata.csv`; raise DataError naming the file, column or row."""
    root = Path(root)
    path = root / "metadata.csv"
    if not path.is_file():
        raise DataError(
            f"{path} not found: put the extracted `{WATERBIRDS_FOLDER}/` folder (the one holding "
            f"metadata.csv) at {root}, or run the opt-in download rule (see README)")
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
    df["group"] = group_of(df["y"], df["place"])
    return df


class GroupDataset(torch.utils.data.Dataset):
    """One split of a Waterbirds-layout data set: items are (image, y, place, index)."""

    def __init__(self, root: str | Path, split: str, transform=None, metadata: pd.DataFrame | None = None):
        self.root = Path(root)
        df = read_metadata(root) if metadata is None else metadata
        self.meta = df[df["split"] == SPLITS[split]].reset_index(drop=True)
        self.transform = transform
        self.y = torch.tensor(self.meta["y"].to_numpy())
        self.place = torch.tensor(self.meta["place"].to_numpy())

    def __len__(self) -> int:
        return len(self.meta)

    def __getitem__(self, i: int):
        path = self.root / self.meta["img_filename"].iloc[i]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except Exception as e:
            raise DataError(f"image {path} (metadata row of img_id {self.meta['img_id'].iloc[i]}) "
                            f"missing or unreadable: {e}") from e
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.y[i]), int(self.place[i]), i
