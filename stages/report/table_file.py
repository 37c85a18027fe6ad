"""One table of a built report as a target of its own: `results/tables/<report>/<table>.csv`
(or `.tex`) is a copy of `results/<report>/<table>.csv`.

Snakemake refuses an output inside another rule's directory output, and the report is one
(`results/<report>`, whose tables depend on its records), so the copy lives beside it.

    python -m stages.report.table_file --report results/imagenet --table table_domain_shift.csv \\
        --out results/tables/imagenet/table_domain_shift.csv
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ..common.io import atomic_path

SUFFIXES = (".csv", ".tex")   # the files of a table (report.md holds its Markdown)


def report_tables(report: Path) -> list[str]:
    """The table files of a built report, sorted (metrics_long.csv, the records, is no table)."""
    return sorted(p.name for p in report.iterdir()
                  if p.suffix in SUFFIXES and p.is_file() and p.name != "metrics_long.csv")


def copy_table(report: Path, table: str, out: Path) -> None:
    """Copy table file `table` of `report` to `out` atomically; FileNotFoundError naming the tables
    the report has when it has no such file."""
    if table not in report_tables(report):
        raise FileNotFoundError(f"{report} has no table {table!r}; its tables: {', '.join(report_tables(report))}")
    with atomic_path(out) as tmp:
        shutil.copyfile(report / table, tmp)


def main(argv=None) -> None:
    """The command line: copy one table of a built report."""
    p = argparse.ArgumentParser(prog="python -m stages.report.table_file",
                                description="Copy one table file of a built report (a target of its own).")
    p.add_argument("--report", required=True, help="the report's folder, results/<report>")
    p.add_argument("--table", required=True, help=f"a table file in it ({', '.join(SUFFIXES)})")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    try:
        copy_table(Path(a.report), a.table, Path(a.out))
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
