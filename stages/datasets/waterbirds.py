"""Waterbirds (Sagawa et al., 2020) and any data set in its layout (metadata.csv + images), read
by the pipeline's existing reader, stages.data; attribute = place (0 land, 1 water)."""

from __future__ import annotations

from pathlib import Path

from .. import data
from .base import ClassificationSet, DatasetLayoutError, check_split, missing

URL = "https://github.com/kohpangwei/group_DRO (waterbird_complete95_forest2water2.tar.gz)"
CLASSNAMES = ["landbird", "waterbird"]
PLACES = ["land", "water"]
# the official Waterbirds zero-shot prompt, plus CLIP's plain one (config/waterbirds.yaml's)
TEMPLATES = ["This is a picture of a {}.", "a photo of a {}."]


def open_waterbirds(root, split, transform=None) -> ClassificationSet:
    check_split("waterbirds", split, tuple(data.SPLITS))
    root = Path(root)
    if not (root / "metadata.csv").is_file():
        raise missing(root, f"the extracted {data.WATERBIRDS_FOLDER}/ folder (metadata.csv and "
                      "the image folders)", URL)
    try:
        dataset = data.GroupDataset(root, split, transform)
    except data.DataError as e:
        raise DatasetLayoutError(str(e)) from e
    return ClassificationSet(
        name="waterbirds", root=root, split=split, dataset=dataset,
        classnames=CLASSNAMES, templates=TEMPLATES, n_attributes=len(PLACES),
        group_names=[f"{c} on {p}" for c in CLASSNAMES for p in PLACES])
