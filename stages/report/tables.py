"""Report tables: evaluation records as frames, mean ± std over seeds, and the table files.

Every table is built the same way: the records' metrics as a long frame (one row per experiment,
target, method, seed, split), each target at its report split, one column per (target, metric)
with one row per (method, seed), then mean and std over seeds. Also here: the methods' row order
(method_order), the 'mean ± std' strings (format_pm), where a section's files go (Out) and a
formatted table written as CSV, LaTeX and Markdown (write_table).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

METRICS = {"worst_group": "Worst-group", "average": "Average", "adjusted_average": "Adj. average"}
# the threshold-free companions of the worst group (stages.method.metrics; docs/metrics.md)
THRESHOLD_FREE = {"worst_group_val_bias": "WG, val bias", "worst_group_label_free": "WG, label-free",
                  "cross_group_auroc": "Cross-group AUROC", "score_offset": "Offset"}
GROUP_METRICS = {"worst_group": METRICS["worst_group"], **THRESHOLD_FREE,
                 "average": METRICS["average"], "adjusted_average": METRICS["adjusted_average"]}
DIGITS = {"cross_group_auroc": 3, "score_offset": 2}   # fractions and std units; the rest in points
KEYS = ["experiment", "target", "role", "head", "method", "seed", "split"]
CURVE_KEYS = ["experiment", "target", "role", "method", "seed", "alpha", "split"]
# spuriosity drift (the records' `spuriosity_drift`): StarFT's label-masked KL, null on targets
# whose class names are not the training set's, and the unmasked KL
DRIFT_MASKED, DRIFT_KL = "drift_masked_kl", "drift_kl"
VALUES = ["accuracy", "n", *METRICS, *THRESHOLD_FREE, DRIFT_MASKED, DRIFT_KL]
SHIFT_MEAN = "Shift mean"


# ---------------------------------------------------------------- records -> frames

def metric_row(metrics: dict, group_names: list[str] | None) -> dict:
    """One split's metrics; group accuracies as columns named by the record's group names."""
    row = {k: metrics[k] for k in VALUES if k in metrics}
    drift = metrics.get("spuriosity_drift")
    if drift:  # older records have none: NaN cells
        row.update({DRIFT_MASKED: drift.get("masked_kl"), DRIFT_KL: drift.get("kl")})
    if group_names and "group_accuracy" in metrics:
        row.update(zip(group_names, metrics["group_accuracy"]))
    return row


def _frame(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    # fixed leading columns, so that a report without group targets still has `worst_group` (NaN)
    df = pd.DataFrame(rows)
    groups = [c for c in df.columns if c not in keys and c not in VALUES]
    return df.reindex(columns=[*keys, *VALUES, *groups])


def long_table(records: list[dict]) -> pd.DataFrame:
    """One row per (experiment, target, method, seed, split) with every metric: the raw material
    of all tables, written as metrics_long.csv."""
    return _frame([{**{k: r.get(k) for k in KEYS[:-1]}, "split": split, **metric_row(m, r.get("group_names"))}
                   for r in records for split, m in r["splits"].items()], KEYS)


def curve_table(records: list[dict]) -> pd.DataFrame:
    """The WiSE-FT curves of the `wiseft` records: one row per (target, seed, alpha, split)."""
    return _frame([{**{k: r.get(k) for k in CURVE_KEYS[:-2]}, "alpha": p["alpha"], "split": split,
                    **metric_row(m, r.get("group_names"))}
                   for r in records for p in r.get("wiseft") or () for split, m in p["splits"].items()], CURVE_KEYS)


def report_split(splits: list[str]) -> str:
    """The split a table shows: test if evaluated, else the last one (ImageNet's test labels are not public)."""
    return "test" if "test" in splits else splits[-1]


def report_splits(long: pd.DataFrame) -> dict[str, str]:
    """target -> its report split, from the splits in the records' order."""
    return {t: report_split(list(dict.fromkeys(s))) for t, s in long.groupby("target", sort=False)["split"]}


def at_report_split(long: pd.DataFrame) -> pd.DataFrame:
    """The rows of each target's report split (works on curve_table too)."""
    return long[long["split"] == long["target"].map(report_splits(long))]


def ordered_targets(rows: pd.DataFrame, roles: tuple[str, ...], listed: list[str] | None = None,
                    groups_only: bool = False) -> list[str]:
    """Targets of `roles` present in `rows`, in the config's order (`listed`), then any others."""
    mask = rows["role"].isin(roles) & (rows["worst_group"].notna() if groups_only else True)
    present = list(dict.fromkeys(rows.loc[mask, "target"]))
    return [t for t in listed or () if t in present] + [t for t in present if t not in (listed or ())]


def wide_frame(rows: pd.DataFrame, columns: dict[str, tuple[str, str]], by: str = "method") -> pd.DataFrame:
    """One row per (`by`, seed), one column per label of `columns` (label -> (target, metric));
    a target or metric the rows lack is a NaN column rather than an error, and a method without
    any of these cells (evaluated on other targets only) no row."""
    metrics = list(dict.fromkeys(m for _, m in columns.values()))
    # unstack refuses duplicate (by, seed, target): two records of one cell would be a bug upstream
    table = rows.set_index([by, "seed", "target"])[metrics].unstack("target")
    return pd.DataFrame({label: table[(m, t)] if (m, t) in table.columns else np.nan
                         for label, (t, m) in columns.items()}, index=table.index).astype(float).dropna(how="all")


def summarise(wide: pd.DataFrame, order: list | None = None, by: str = "method") -> pd.DataFrame:
    """Mean and std over seeds per `by` (methods in `order`); columns (label, mean|std) and seeds."""
    grouped = wide.groupby(level=by, sort=order is None)
    stats = grouped.agg(["mean", "std"])
    if order is not None:
        stats = stats.reindex([m for m in order if m in stats.index])
    stats[("seeds", "")] = wide.notna().any(axis=1).groupby(level=by).sum()
    return stats


def accuracy_wide(rows: pd.DataFrame, targets: list[str], mean_label: str, id_target: str | None = None,
                  by: str = "method") -> pd.DataFrame:
    """Per (`by`, seed): the accuracy of each target and its mean over `targets` (the ID column,
    `<id_target> (ID)`, excluded)."""
    columns = {f"{id_target} (ID)": (id_target, "accuracy")} if id_target else {}
    columns.update({t: (t, "accuracy") for t in targets})
    wide = wide_frame(rows, columns, by)
    # skipna=False: a seed missing a target has no mean rather than a mean of fewer targets
    wide[mean_label] = wide[targets].mean(axis=1, skipna=False)
    return wide


def accuracy_table(rows: pd.DataFrame, targets: list[str], mean_label: str, id_target: str | None = None,
                   order: list | None = None, by: str = "method") -> pd.DataFrame:
    """Accuracy of each target and, per seed, its mean over `targets` (the ID column excluded),
    then mean ± std over seeds: the std of a mean column is that of the per-seed means."""
    return summarise(accuracy_wide(rows, targets, mean_label, id_target, by), order, by)


def group_table(rows: pd.DataFrame, target: str, groups: list[str], order: list | None = None,
                by: str = "method") -> pd.DataFrame:
    """Worst-group, its threshold-free companions (those some record has: records written before
    they were measured have none), average, adjusted average and every group's accuracy of one target."""
    stats = summarise(wide_frame(rows, {k: (target, k) for k in [*GROUP_METRICS, *groups]}, by), order, by)
    empty = [k for k in THRESHOLD_FREE if stats[(k, "mean")].isna().all()]
    return stats.drop(columns=empty, level=0)


def group_overview(rows: pd.DataFrame, targets: list[str], order: list[str]) -> pd.DataFrame:
    """Worst-group and average accuracy of every group target side by side."""
    columns = {f"{t} {METRICS[k].lower()}": (t, k) for t in targets for k in ("worst_group", "average")}
    return summarise(wide_frame(rows, columns), order)


def format_pm(stats: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """'mean ± std' strings (std omitted for a single seed, '–' for a cell without runs)."""
    def cell(m, s, n):
        if np.isnan(m):
            return "–"
        return f"{m:.{n}f}" if np.isnan(s) else f"{m:.{n}f} ± {s:.{n}f}"

    out = pd.DataFrame(index=stats.index)
    for col in dict.fromkeys(c for c, _ in stats.columns if c != "seeds"):
        n = DIGITS.get(col, digits)
        out[GROUP_METRICS.get(col, col)] = [cell(m, s, n) for m, s in zip(stats[(col, "mean")], stats[(col, "std")])]
    out["Seeds"] = stats[("seeds", "")]
    out.index.name = "Method"
    return out


def method_order(finetune: dict) -> list[str]:
    """Rows of every table: zero-shot first, the config's methods, WiSE-FT last."""
    return list(dict.fromkeys(["zeroshot", *(m for m in finetune["methods"] if m != "wiseft"), "wiseft"]))


# ---------------------------------------------------------------- writing

class Out(NamedTuple):
    """Where a section's files go: the report's (temporary) folder and the section's name prefix."""
    folder: Path
    prefix: str

    def name(self, stem: str) -> str:
        """The file name of `stem` in this section: the prefix, then the stem."""
        return f"{self.prefix}{stem}"

    def path(self, stem: str) -> Path:
        """Where the section's file `stem` goes."""
        return self.folder / self.name(stem)


def write_table(table: pd.DataFrame, out: Out, stem: str, caption: str) -> list[str]:
    """CSV and LaTeX files of a formatted table; returns its Markdown lines."""
    table.to_csv(out.path(f"{stem}.csv"))
    latex = table.reset_index().to_latex(index=False, escape=True, caption=caption.replace("_", r"\_"),
                                         label=f"tab:{out.name(stem)}")
    out.path(f"{stem}.tex").write_text(latex.replace("±", "$\\pm$"))
    # disable_numparse keeps "10.0" as written instead of re-formatting it as 10
    return [table.to_markdown(disable_numparse=True), ""]
