"""A report section's tables and figures as Markdown: domain shift, group shift, zero-shot.

View is one section as its tables see it (records, report-split rows, method order, where files
go); domain_shift_lines, group_lines and zeroshot_lines write their tables and figures and return
the section's Markdown lines.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from ..method.registry import run_label
from .drift import drift_cells, drift_note
from .figures import plot_drift, plot_groups, plot_id_vs_shift, plot_threshold, plot_wiseft
from .notes import table_note
from .protocol import mark_columns
from .robustness import ABOVE_LINE, LOGIT_STATED, gain_cells, gain_wide
from .tables import (GROUP_METRICS, METRICS, SHIFT_MEAN, Out, accuracy_table, accuracy_wide, format_pm,
                     group_overview, group_table, summarise, wide_frame, write_table)


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
    marks: dict[str, str]        # target -> footnote, where its report split was used for a choice

    def note(self, targets: list[str]) -> list[str]:
        """`table_note` of the table over `targets`: checkpoints, splits and heads of its numbers."""
        return table_note(self.rows, targets, self.cfg, self.splits, self.order)

    def table(self, stats: pd.DataFrame | None, stem: str, caption: str, column_targets: dict[str, str],
              formatted: pd.DataFrame | None = None) -> list[str]:
        """Write a table (`formatted`, else `stats` as 'mean ± std'), its columns whose split was
        used for a choice marked (column_targets: column -> target); its Markdown and footnotes."""
        table, footnotes = mark_columns(with_changes(format_pm(stats) if formatted is None else formatted,
                                                     self.cfg["finetune"]), column_targets, self.marks)
        return write_table(table, self.out, stem, f"{self.title}: {caption}") + footnotes


def with_changes(table: pd.DataFrame, finetune: dict) -> pd.DataFrame:
    """`table` with a first column *Changes*, each variant row named by what it changes
    (registry.run_label: "starft, lambda 5"), when a row is a config variant; else as it is."""
    labels = [run_label(finetune, m) for m in table.index]
    if all(label == m for label, m in zip(labels, table.index)):
        return table
    table = table.copy()
    table.insert(0, "Changes", [label if label != m else "" for label, m in zip(labels, table.index)])
    return table


def insert_drift(table: pd.DataFrame, drift: tuple | None) -> pd.DataFrame:
    """The drift column (drift.drift_cells) before *Seeds*."""
    if drift is not None:
        table.insert(table.columns.get_loc("Seeds"), drift[0], drift[1])
    return table


def domain_shift_lines(v: View, shifts: list[str]) -> list[str]:
    """The *Domain shift* subsection: accuracy on the ID set and on `shifts`, effective robustness
    where the WiSE-FT curve covers them, drift; writes its tables, the WiSE-FT curve's CSV and the
    ID-vs-shift figure."""
    train, out = v.cfg["train"], v.out
    id_col = f"{train} (ID)"
    wise = v.curve[v.curve["target"].isin([train, *shifts])]
    # the effective-robustness column needs the WiSE-FT curve at the ID set and every shift
    has_line = not wise.empty and set(wise["target"]) >= {train, *shifts}
    wide = (gain_wide(v.rows, wise, train, shifts) if has_line
            else accuracy_wide(v.rows, shifts, SHIFT_MEAN, id_target=train))
    stats = summarise(wide.drop(columns=[ABOVE_LINE], errors="ignore"), v.order)
    table = format_pm(stats)
    lines = ["### Domain shift", "",
             f"Accuracy on `{train}` (ID) and on each distribution shift; **{SHIFT_MEAN}**: each seed's mean over "
             f"the {len(shifts)} shifts, then mean ± std over seeds.", ""]
    footnotes = []
    if has_line:
        cells, flagged = gain_cells(wide, list(table.index))
        table.insert(table.columns.get_loc("Seeds"), ABOVE_LINE, cells)
        of = v.cfg["finetune"]["wiseft_of"]
        lines += [f"**{ABOVE_LINE}** (effective robustness): each seed's shift mean minus that of the WiSE-FT "
                  f"curve of `{of}` (alpha 0 to 1, the same seed's) at the seed's ID accuracy, in points, then "
                  "mean ± std over seeds; positive: above the line that plain fine-tuning and its interpolation "
                  f"with the zero-shot weights trace. The curve is joined point to point on logit axes, "
                  f"{LOGIT_STATED}; where it passes an ID accuracy twice, its higher shift mean counts.", ""]
        if flagged:
            footnotes = ["Blank in *" + ABOVE_LINE + "*: the method's ID accuracy lies outside the ID range of the "
                         "WiSE-FT curve for every seed (nothing is extrapolated); '(k of n seeds)': only k seeds lie "
                         "within it.", ""]
    drift = drift_cells(v.rows, shifts, list(table.index), "shift mean")
    insert_drift(table, drift)
    if drift is not None:
        footnotes += drift_note(v.records, shifts)
    columns = {id_col: train, **{t: t for t in shifts}, ABOVE_LINE: train}
    lines += v.table(None, "table_domain_shift", "domain shift", columns, formatted=table) + footnotes
    lines += v.note([train, *shifts])
    wise_stats = None if wise.empty else accuracy_table(wise, shifts, SHIFT_MEAN, id_target=train, by="alpha")
    if wise_stats is not None:
        wise_stats.to_csv(out.path("wiseft_id_vs_shift.csv"))
    plot_id_vs_shift(stats, id_col, out.path("id_vs_shift.png"), f"{v.title}: ID vs shift", v.styles,
                     wise_stats, f"WiSE-FT of {v.cfg['finetune']['wiseft_of']} (alpha 0 to 1)")
    return lines + [f"![ID vs mean shift accuracy, logit axes]({out.name('id_vs_shift.png')})", ""]


def group_lines(v: View, targets: list[str]) -> list[str]:
    """The *Group shift* subsection: an overview over `targets` when several, then per target its
    group table, figures (per-group accuracy, drift, WiSE-FT curve) and files."""
    ft, out = v.cfg["finetune"], v.out
    group_names = {r["target"]: r["group_names"] for r in v.records if r.get("group_names")}
    lines = ["### Group shift", "",
             "**Worst-group**: the lowest accuracy over the target's groups. **Average**: accuracy over all "
             "samples of the split. **Adj. average**: group accuracies weighted by the group proportions of the "
             "target's *training* split (the Waterbirds literature's convention). Per-group columns are the "
             "target's groups.", "",
             "With two classes the worst group hinges on one number, the bias between the two class prompts; "
             "its threshold-free companions (docs/metrics.md) say what the scores hold apart from it. "
             "**WG, val bias**: the worst group with the bias between the classes chosen on the target's own "
             "val split (never on the split shown). **WG, label-free**: with the bias under which val's "
             "predictions take each class as often as the target's training split holds it (no val label "
             "read; the median score for balanced classes). **Cross-group AUROC**: over pairs of groups of "
             "different classes, the lowest chance that a sample of the one class scores above one of the "
             "other (0.5: no separation). **Offset**: the mean score l_1 − l_0 over groups, in pooled "
             "within-group std; negative: the head leans to the first class.", ""]
    if len(targets) > 1:
        lines += ["#### All group targets", ""]
        columns = {f"{t} {METRICS[k].lower()}": t for t in targets for k in ("worst_group", "average")}
        lines += v.table(group_overview(v.rows, targets, v.order), "table_group_shift", "group shift", columns)
        lines += v.note(targets)
    for t in targets:
        groups = group_names[t]
        stats = group_table(v.rows, t, groups, v.order)
        table = format_pm(stats)
        drift = drift_cells(v.rows, [t], list(table.index))
        insert_drift(table, drift)
        columns = {c: t for c in [*GROUP_METRICS.values(), *groups]}
        lines += [f"#### {t}", ""] + v.table(None, f"table_group_shift_{t}", t, columns, formatted=table)
        lines += (drift_note(v.records, [t]) if drift is not None else []) + v.note([t])
        plot_groups(stats, groups, out.path(f"groups_{t}.png"), f"{t} {v.splits[t]}: per-group accuracy", v.styles)
        lines += [f"![per-group accuracy, {t}]({out.name(f'groups_{t}.png')})", ""]
        if plot_threshold(stats, out.path(f"threshold_{t}.png"),
                          f"{t} {v.splits[t]}: worst group, raw and with the bias chosen apart", v.styles):
            lines += [f"![worst group, raw and threshold-free, {t}]({out.name(f'threshold_{t}.png')})", ""]
        if drift is not None:
            plot_drift(stats, drift[2], drift[0], out.path(f"drift_{t}.png"),
                       f"{t} {v.splits[t]}: worst-group accuracy vs spuriosity drift", v.styles)
            lines += [f"![worst-group accuracy vs spuriosity drift, {t}]({out.name(f'drift_{t}.png')})", ""]
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


def id_lines(v: View) -> list[str]:
    """A section whose only target is its training set (a transfer experiment): its accuracy."""
    train = v.cfg["train"]
    label = f"{train} (ID)"
    table = format_pm(summarise(wide_frame(v.rows, {label: (train, "accuracy")}), v.order))
    drift = drift_cells(v.rows, [train], list(table.index))
    insert_drift(table, drift)
    return (["### In-distribution accuracy", "", f"Accuracy on `{train}` at its report split, mean ± std over seeds.",
             ""]
            + v.table(None, "table_id", "in-distribution accuracy", {label: train}, formatted=table)
            + (drift_note(v.records, [train]) if drift is not None else []) + v.note([train]))


def zeroshot_lines(v: View, targets: list[str]) -> list[str]:
    """The *Zero-shot classification* subsection: accuracy on each of `targets` and their mean, with
    its table files."""
    return (["### Zero-shot classification", "",
             "Accuracy on each classification data set; **Mean**: each seed's mean over them, then mean ± std.", ""]
            + v.table(accuracy_table(v.rows, targets, "Mean", order=v.order), "table_zeroshot",
                      "zero-shot classification", {t: t for t in targets})
            + v.note(targets))
