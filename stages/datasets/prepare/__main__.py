"""python -m stages.datasets.prepare ...: see stages/datasets/prepare/__init__.py."""

from __future__ import annotations

import argparse
import sys

from ...common.io import write_json
from ..base import DatasetConfigError
from ..datacheck import json_option
from . import PrepareError, prepare


def main(argv=None) -> None:
    """The command line: fetch, check and lay out one data set, then write its prepare record (JSON)."""
    p = argparse.ArgumentParser(prog="python -m stages.datasets.prepare",
                                description="Fetch, check and lay out one published data set.")
    p.add_argument("--dataset", required=True, help="the config's name of the data set")
    p.add_argument("--reader", required=True)
    p.add_argument("--root", required=True, help="the folder the reader reads")
    p.add_argument("--spec", default="null", help="the config's `prepare` entry (JSON)")
    p.add_argument("--downloads", required=True, help="where downloads (and their .part files) go")
    p.add_argument("--keep-downloads", action="store_true", help="keep the archives once prepared")
    p.add_argument("--out", required=True, help="the record to write (JSON)")
    for option in ("classnames", "templates", "splits"):
        p.add_argument(f"--{option}", help="JSON list (or null: the reader's), as for the data check")
    a = p.parse_args(argv)
    try:
        record = prepare(a.dataset, a.reader, a.root, json_option("spec", a.spec), a.downloads,
                         keep_downloads=a.keep_downloads, classnames=json_option("classnames", a.classnames),
                         templates=json_option("templates", a.templates), splits=json_option("splits", a.splits))
    except (PrepareError, DatasetConfigError) as e:
        sys.exit(f"error: {e}")
    write_json(a.out, record)
    print(f"{a.dataset}: {record['status']} at {a.root}: "
          + ", ".join(f"{s} {r['n_images']} images" for s, r in record["splits"].items()))


if __name__ == "__main__":
    main()
