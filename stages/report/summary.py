"""A report's summary across its sections: each method's accuracy per set and the mean over the sets.

A composite report whose sections are all of one kind, each experiment scored on its own training
set only (results/transfer: fine-tuned and tested on Caltech101, Stanford Cars, Flowers102,
SUN397), gets one table before its sections: a column per section (its training set's accuracy at
its report split) and their mean. As in the other mean columns, a seed's mean is over all sets (a
seed missing one has none), then mean ± std over seeds; seed k of two experiments are unrelated
runs, so the std is that of a mean over one run per set.
"""

from __future__ import annotations

import pandas as pd

from .sections import with_changes
from .tables import Out, at_report_split, format_pm, long_table, method_order, summarise, wide_frame, write_table

SUMMARY_MEAN = "Mean over the sets"


def id_only(section: dict) -> bool:
    """Is the section scored on its training set alone, without groups (a transfer experiment)?"""
    long = long_table(section["records"])
    return set(long["target"]) == {section["config"]["train"]} and long["worst_group"].isna().all()


def is_summarised(sections: list[dict]) -> bool:
    """Sections of one kind across several experiments: each on its own training set alone, no
    training set twice."""
    trains = [s["config"]["train"] for s in sections]
    return len(sections) > 1 and len(set(trains)) == len(trains) and all(id_only(s) for s in sections)


def summary_wide(sections: list[dict]) -> pd.DataFrame:
    """Per (method, seed): each section's training-set accuracy (column: the set) and their mean."""
    parts = []
    for s in sections:
        train = s["config"]["train"]
        parts.append(wide_frame(at_report_split(long_table(s["records"])), {train: (train, "accuracy")}))
    wide = pd.concat(parts, axis=1)
    wide[SUMMARY_MEAN] = wide.mean(axis=1, skipna=False)
    return wide


def summary_lines(sections: list[dict], out: Out) -> list[str]:
    """The summary table (table_summary.csv/.tex) as Markdown, for is_summarised reports."""
    order = list(dict.fromkeys(m for s in sections for m in method_order(s["config"]["finetune"])))
    stats = summarise(summary_wide(sections), order)
    variants = {k: v for s in sections for k, v in (s["config"]["finetune"].get("variants") or {}).items()}
    table = with_changes(format_pm(stats), {"variants": variants})
    return (["## Summary over the sets", "",
             (f"Each method's accuracy on every set (at its report split, in its own experiment) and "
              f"**{SUMMARY_MEAN}**: each seed's mean over the sets (no mean for a seed missing a set), then mean ± std "
              "over seeds; a seed's runs on different sets are separate runs."), ""]
            + write_table(table, out, "table_summary", "accuracy per set and mean over the sets"))
