"""A report section's tables and figures as Markdown: domain shift, group shift, zero-shot.

View is one section as its tables see it (records, report-split rows, method order, where files
go); domain_shift_lines, group_lines and zeroshot_lines write their tables and figures and return
the section's Markdown lines.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from .figures import plot_groups, plot_id_vs_shift, plot_wiseft
from .notes import table_note
from .tables import (SHIFT_MEAN, Out, accuracy_table, format_pm, group_overview, group_table,
                     write_table)


class View(NamedTuple):
    """One section as its tables see it: records, their report-split rows and where files go."""
    title: str
    cfg: dict
    records: list[dict]
    rows: pd.DataFrame           # each target's report split
    curve: pd.DataFrame          # the WiSE-FT curves, likewise
    splits: dict[str, str]       # target -> report split
    order: list[str]             # methods, as table rows
    out: Out
    styles: dict[str, dict]

    def note(self, targets: list[str]) -> list[str]:
        return table_note(self.rows, targets, self.cfg, self.splits, self.order)

    def table(self, stats: pd.DataFrame, stem: str, caption: str) -> list[str]:
        return write_table(format_pm(stats), self.out, stem, f"{self.title}: {caption}")


def domain_shift_lines(v: View, shifts: list[str]) -> list[str]:
    train, out = v.cfg["train"], v.out
    stats = accuracy_table(v.rows, shifts, SHIFT_MEAN, id_target=train, order=v.order)
    lines = ["### Domain shift", "",
             f"Accuracy on `{train}` (ID) and on each distribution shift; **{SHIFT_MEAN}**: each seed's mean over "
             f"the {len(shifts)} shifts, then mean ± std over seeds.", ""]
    lines += v.table(stats, "table_domain_shift", "domain shift") + v.note([train, *shifts])
    wise = v.curve[v.curve["target"].isin([train, *shifts])]
    wise_stats = None if wise.empty else accuracy_table(wise, shifts, SHIFT_MEAN, id_target=train, by="alpha")
    if wise_stats is not None:
        wise_stats.to_csv(out.path("wiseft_id_vs_shift.csv"))
    plot_id_vs_shift(stats, f"{train} (ID)", out.path("id_vs_shift.png"), f"{v.title}: ID vs shift", v.styles,
                     wise_stats, f"WiSE-FT of {v.cfg['finetune']['wiseft_of']} (alpha 0 to 1)")
    return lines + [f"![ID vs mean shift accuracy]({out.name('id_vs_shift.png')})", ""]


def group_lines(v: View, targets: list[str]) -> list[str]:
    ft, out = v.cfg["finetune"], v.out
    group_names = {r["target"]: r["group_names"] for r in v.records if r.get("group_names")}
    lines = ["### Group shift", "",
             "**Worst-group**: the lowest accuracy over the target's groups. **Average**: accuracy over all "
             "samples of the split. **Adj. average**: group accuracies weighted by the group proportions of the "
             "target's *training* split (the Waterbirds literature's convention). Per-group columns are the "
             "target's groups.", ""]
    if len(targets) > 1:
        lines += ["#### All group targets", ""]
        lines += v.table(group_overview(v.rows, targets, v.order), "table_group_shift", "group shift")
        lines += v.note(targets)
    for t in targets:
        groups = group_names[t]
        stats = group_table(v.rows, t, groups, v.order)
        lines += [f"#### {t}", ""] + v.table(stats, f"table_group_shift_{t}", t) + v.note([t])
        plot_groups(stats, groups, out.path(f"groups_{t}.png"), f"{t} {v.splits[t]}: per-group accuracy", v.styles)
        lines += [f"![per-group accuracy, {t}]({out.name(f'groups_{t}.png')})", ""]
        wise = v.curve[v.curve["target"] == t]
        if wise.empty:
            continue
        wise_stats = group_table(wise, t, [], by="alpha")
        wise_stats.to_csv(out.path(f"wiseft_{t}.csv"))
        plot_wiseft(wise_stats, out.path(f"wiseft_{t}.png"), f"{t} {v.splits[t]}: WiSE-FT of {ft['wiseft_of']}",
                    v.styles, ends=("zeroshot", ft["wiseft_of"]))
        lines += [f"theta = (1 - alpha) * theta_zeroshot + alpha * theta_{ft['wiseft_of']}; the `wiseft` row "
                  f"of the tables is alpha = {ft['wiseft_alpha']}.", "",
                  f"![WiSE-FT curve, {t}]({out.name(f'wiseft_{t}.png')})", ""]
    return lines


def zeroshot_lines(v: View, targets: list[str]) -> list[str]:
    return (["### Zero-shot classification", "",
             "Accuracy on each classification data set; **Mean**: each seed's mean over them, then mean ± std.", ""]
            + v.table(accuracy_table(v.rows, targets, "Mean", order=v.order), "table_zeroshot",
                      "zero-shot classification")
            + v.note(targets))
