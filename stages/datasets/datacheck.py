"""The data check of one configured data set: every split its reader has, opened (so a wrong
layout fails here, before any GPU job), with the config's class name and template overrides
applied, and its images and groups counted from the label arrays (no image is decoded).

    python -m stages.datasets check --dataset waterbirds --reader waterbirds \\
        --root data/waterbirds/waterbird_complete95_forest2water2 --out data/waterbirds/data_check.json

The record (data/{dataset}/data_check.json):
    {"dataset", "reader", "root", "classnames", "templates", "group_names" (null: no groups),
     "eval_splits": the evaluated splits (config's, else EVAL_SPLITS),
     "splits": {split: {"n_images", "group_counts" (null: no groups)}} for every split present,
     "absent_splits": {split: why}: splits whose files are not there, allowed only when not evaluated}
Groups (base.group_index) are counted over n_classes * n_attributes groups.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from ..common.io import write_json
from .readers import EVAL_SPLITS, READERS, SPLITS, open as open_split
from .base import ClassificationSet, DatasetConfigError, DatasetLayoutError, DatasetMissing, group_index
from .imagefolder import named_classes


def resolve_splits(name: str, reader: str, splits) -> list[str]:
    """The evaluated splits: the config's (checked against the reader's) or the reader's default."""
    if splits is None:
        return list(EVAL_SPLITS[reader])
    if not isinstance(splits, list) or not splits or not all(isinstance(s, str) for s in splits):
        raise DatasetConfigError(f"datasets.{name}.splits: expected a non-empty list of split names "
                                 f"or null, got {splits!r}")
    unknown = [s for s in splits if s not in SPLITS[reader]]
    if unknown:
        raise DatasetConfigError(f"datasets.{name}.splits: unknown split(s) {unknown}; reader "
                                 f"{reader!r} has {', '.join(SPLITS[reader])}")
    return list(dict.fromkeys(splits))


def _strings(name: str, key: str, value) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise DatasetConfigError(f"datasets.{name}.{key}: expected a non-empty list of strings "
                                 f"or null, got {value!r}")
    return list(value)


def with_overrides(ds: ClassificationSet, name: str, classnames=None,
                   templates=None) -> ClassificationSet:
    """`ds` with the config's class names / templates (None: the reader's). An override must name
    as many classes as the head the reader builds, since labels index them."""
    changes = {}
    if classnames is not None:
        classnames = _strings(name, "classnames", classnames)
        if len(classnames) != len(ds.classnames):
            raise DatasetConfigError(
                f"datasets.{name}.classnames: {len(classnames)} names, but reader {ds.name!r} "
                f"reads {len(ds.classnames)} classes at {ds.root} (e.g. {', '.join(ds.classnames[:3])})")
        changes["classnames"] = classnames
        # labels that index the head's classes get the new names; a label space of its own
        # (ObjectNet's 113 classes) keeps its names
        changes["label_names"] = classnames if ds.label_names == ds.classnames else ds.label_names
    if templates is not None:
        templates = _strings(name, "templates", templates)
        bad = [t for t in templates if t.count("{}") != 1]
        if bad:
            raise DatasetConfigError(f"datasets.{name}.templates: each template needs exactly one "
                                     f"'{{}}' for the class name: {bad[:3]}")
        changes["templates"] = templates
    return dataclasses.replace(ds, **changes)


def group_counts(labels: np.ndarray, attributes: np.ndarray, n_classes: int,
                 n_attributes: int) -> list[int]:
    """Samples per group (base.group_index), over n_classes * n_attributes groups."""
    return np.bincount(group_index(labels, attributes, n_attributes),
                       minlength=n_classes * n_attributes).tolist()


def split_record(ds: ClassificationSet, evaluated: bool) -> dict:
    """{"n_images", "group_counts"} of one opened split; its labels (and attributes) must fit the
    classes (and groups), since evaluation indexes with them."""
    labels, attributes = ds.labels_and_attributes()
    where = f"{ds.root}: split {ds.split!r}"
    if evaluated and not len(labels):
        raise DatasetLayoutError(f"{where}: no images, and the split is evaluated")
    n_classes = len(ds.label_names)
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        raise DatasetLayoutError(f"{where}: label {labels[bad][0]} of sample {np.flatnonzero(bad)[0]} "
                                 f"is outside the {n_classes} classes {ds.label_names[:3]}...")
    if not ds.group_names:
        return {"n_images": len(labels), "group_counts": None}
    bad = (attributes < 0) | (attributes >= ds.n_attributes)
    if bad.any():
        raise DatasetLayoutError(f"{where}: attribute {attributes[bad][0]} of sample "
                                 f"{np.flatnonzero(bad)[0]} is outside 0 ... {ds.n_attributes - 1}")
    counts = group_counts(labels, attributes, n_classes, ds.n_attributes)
    assert len(counts) == ds.n_groups, f"{ds.name}: group_names do not match classes x attributes"
    return {"n_images": len(labels), "group_counts": counts}


def check(name: str, reader: str, root, classnames=None, templates=None, splits=None) -> dict:
    """The data check record of data set `name` (read by `reader` at `root`); raises
    DatasetLayoutError (the data) or DatasetConfigError (the config key) and writes nothing.
    `classnames`: the config's list, or for reader imagefolder a {folder: name} mapping (its
    `classnames_file`); an imagefolder's are checked against its class folders (named_classes)."""
    if reader not in READERS:
        raise DatasetConfigError(f"datasets.{name}.reader: unknown reader {reader!r}; known: "
                                 f"{', '.join(READERS)}")
    if isinstance(classnames, dict) and reader != "imagefolder":
        raise DatasetConfigError(f"datasets.{name}.classnames_file: reader {reader!r} does not name its classes "
                                 "after folders; only reader imagefolder takes a folder,name file")
    evaluated = resolve_splits(name, reader, splits)
    records, absent, first = {}, {}, None
    for split in SPLITS[reader]:
        try:
            ds = open_split(reader, root, split)
        except DatasetMissing as e:
            if split in evaluated:
                raise
            absent[split] = str(e)  # e.g. ImageNet's train/ when only val is evaluated
            continue
        names = classnames
        if reader == "imagefolder" and classnames is not None:
            names = named_classes(ds, name, classnames if isinstance(classnames, dict)
                                  else _strings(name, "classnames", classnames))
        ds = with_overrides(ds, name, names, templates)
        records[split] = split_record(ds, split in evaluated)
        first = ds if first is None else first
    return {"dataset": name, "reader": reader, "root": str(root), "classnames": first.classnames,
            "templates": first.templates, "group_names": first.group_names,
            "eval_splits": evaluated, "splits": records, "absent_splits": absent}


def json_option(option: str, text: str | None):
    """The JSON value of command line option --`option`, None when not given; DatasetConfigError when not JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetConfigError(f"--{option}: not JSON ({e}): {text!r}") from None


def main(argv=None) -> None:
    """The command line: `check` opens every split of a data set and writes its data check record."""
    p = argparse.ArgumentParser(prog="python -m stages.datasets",
                                description="Tools for the data sets of stages.datasets.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="open every split of a data set and write its data check record")
    c.add_argument("--dataset", required=True, help="the config's name of the data set")
    c.add_argument("--reader", required=True, help=f"one of {', '.join(READERS)}")
    c.add_argument("--root", required=True)
    c.add_argument("--out", required=True, help="the record to write (JSON)")
    c.add_argument("--classnames", help="JSON list (or null: the reader's); imagefolder: or an object {folder: name}")
    for option in ("templates", "splits"):
        c.add_argument(f"--{option}", help="JSON list (or null: the reader's)")
    c.add_argument("--preparable", action="store_true",
                   help="the config says how to fetch it: a missing folder's error names the rule")
    a = p.parse_args(argv)
    try:
        record = check(a.dataset, a.reader, a.root, json_option("classnames", a.classnames),
                       json_option("templates", a.templates), json_option("splits", a.splits))
    except DatasetMissing as e:
        hint = (f"; or fetch it: snakemake --cores 1 data/{a.dataset}/prepared"
                if a.preparable else "")
        sys.exit("error: " + " ".join(str(e).splitlines()) + hint)
    except (DatasetLayoutError, DatasetConfigError) as e:
        sys.exit("error: " + " ".join(str(e).splitlines()))
    write_json(a.out, record)
    print(f"{a.dataset}: " + ", ".join(f"{s} {r['n_images']} images" for s, r in record["splits"].items()))
