"""Report stage: paper-style tables (Markdown, CSV, LaTeX) and figures, mean ± std over seeds.

An experiment fine-tunes once on its `train` data set and evaluates every run on many targets;
each (run, target) is one evaluation record (`results/runs/<experiment>/<method>/seed<seed>/eval/
<target>.json`, role `id`, `shift`, `group` or `zeroshot`). A report is a list of *sections*, one
per experiment: a plain experiment report is one section, a composite report (e.g.
results/waterbirds) several, a section possibly restricted to some targets and some methods of its
experiment. Each section ends with a Reading: paired per-seed differences of its headline metrics
against zero-shot and plain fine-tuning, in words (does fine-tuning hurt robustness here at all,
where StarFT wins and where it loses).

Every table is built the same way: the records' metrics as a long frame (one row per experiment,
target, method, seed, split), each target at its report split, one column per (target, metric)
with one row per (method, seed), then mean and std over seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..method.registry import METHODS  # noqa: E402
from ..common.io import atomic_dir  # noqa: E402

HATCHES = ("", "//", "..", "xx", "\\\\", "oo")  # one per ten methods of method_styles
METRICS = {"worst_group": "Worst-group", "average": "Average", "adjusted_average": "Adj. average"}
KEYS = ["experiment", "target", "role", "head", "method", "seed", "split"]
CURVE_KEYS = ["experiment", "target", "role", "method", "seed", "alpha", "split"]
VALUES = ["accuracy", "n", *METRICS]
SHIFT_MEAN = "Shift mean"
ZEROSHOT_EVAL = (
    " Targets other than the training set are zero-shot evaluations: each run's (fine-tuned) text encoder "
    "builds a zero-shot head from the target's class names and templates; a run's linear head is used only "
    "on targets in the training label space (the records' `head` says which).")
SELECT = {"last": "the last epoch of each run",
          "val_worst_group": "each run's epoch of best worst-group accuracy on the training set's val split"}


# ---------------------------------------------------------------- records -> frames

def metric_row(metrics: dict, group_names: list[str] | None) -> dict:
    """One split's metrics; group accuracies as columns named by the record's group names."""
    row = {k: metrics[k] for k in VALUES if k in metrics}
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
    """Worst-group, average, adjusted average and every group's accuracy of one target."""
    return summarise(wide_frame(rows, {k: (target, k) for k in [*METRICS, *groups]}, by), order, by)


def group_overview(rows: pd.DataFrame, targets: list[str], order: list[str]) -> pd.DataFrame:
    """Worst-group and average accuracy of every group target side by side."""
    columns = {f"{t} {METRICS[k].lower()}": (t, k) for t in targets for k in ("worst_group", "average")}
    return summarise(wide_frame(rows, columns), order)


def format_pm(stats: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """'mean ± std' strings (std omitted for a single seed, '–' for a cell without runs)."""
    def cell(m, s):
        if np.isnan(m):
            return "–"
        return f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"

    out = pd.DataFrame(index=stats.index)
    for col in dict.fromkeys(c for c, _ in stats.columns if c != "seeds"):
        out[METRICS.get(col, col)] = [cell(m, s) for m, s in zip(stats[(col, "mean")], stats[(col, "std")])]
    out["Seeds"] = stats[("seeds", "")]
    out.index.name = "Method"
    return out


def method_order(finetune: dict) -> list[str]:
    """Rows of every table: zero-shot first, the config's methods, WiSE-FT last."""
    return list(dict.fromkeys(["zeroshot", *(m for m in finetune["methods"] if m != "wiseft"), "wiseft"]))


# ---------------------------------------------------------------- figures

def method_styles(methods: list[str]) -> dict[str, dict]:
    """A bar colour and hatch per method, pairwise distinct, decided once for a whole report.

    matplotlib's default cycle has 10 colours, so with 11 methods the first and the eleventh
    looked alike. Here: tab10's colours first (tab20's dark half), then tab20's light half, then
    tab20b and tab20c, each ten with its own hatch (a light colour alone is close to its dark
    twin); past 60 methods, evenly spaced samples of a continuous colormap.
    """
    tab20 = matplotlib.colormaps["tab20"].colors
    palette = [*tab20[0::2], *tab20[1::2], *matplotlib.colormaps["tab20b"].colors,
               *matplotlib.colormaps["tab20c"].colors]
    if len(methods) <= len(palette):
        return {m: {"color": tuple(palette[i]), "hatch": HATCHES[i // 10]} for i, m in enumerate(methods)}
    colours = matplotlib.colormaps["turbo"](np.linspace(0, 1, len(methods)))
    return {m: {"color": tuple(c), "hatch": ""} for m, c in zip(methods, colours)}


def _save(fig, ax, path: Path, title: str) -> None:
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_groups(stats: pd.DataFrame, groups: list[str], path: Path, title: str,
                styles: dict[str, dict] | None = None) -> None:
    methods = list(stats.index)
    styles = styles or method_styles(methods)
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.6))
    for i, m in enumerate(methods):
        means = [stats.loc[m, (g, "mean")] for g in groups]
        stds = np.nan_to_num([stats.loc[m, (g, "std")] for g in groups])
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=m,
               color=styles[m]["color"], hatch=styles[m]["hatch"], edgecolor="white", linewidth=0)
    ax.set_xticks(x, groups)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=min(7, len(methods)), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.grid(axis="y", alpha=0.3)
    _save(fig, ax, path, title)


def plot_wiseft(curve: pd.DataFrame, path: Path, title: str, styles: dict[str, dict] | None = None,
                ends: tuple[str, str] = ("zeroshot", "ft")) -> None:
    """The curve in the `wiseft` method's colour; its two ends (alpha 0 and 1) marked in the
    colours of the methods they are, `ends`, as in the per-group figures."""
    styles = styles or method_styles(["wiseft", *ends])
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    alpha = curve.index.to_numpy()
    for key, style in (("worst_group", "-o"), ("average", "--s")):
        mean, std = curve[(key, "mean")].to_numpy(), np.nan_to_num(curve[(key, "std")].to_numpy())
        ax.plot(alpha, mean, style, ms=3, label=f"wiseft, {METRICS[key].lower()}", color=styles["wiseft"]["color"])
        ax.fill_between(alpha, mean - std, mean + std, alpha=0.2, color=styles["wiseft"]["color"])
        for end, a in zip(ends, (0.0, 1.0)):
            if end in styles and a in curve.index:
                ax.plot([a], [curve.loc[a, (key, "mean")]], style[-1], ms=7, color=styles[end]["color"],
                        label=f"{end} (alpha {a:g})" if key == "worst_group" else None)
    ax.set_xlabel("alpha (0 = zero-shot, 1 = fine-tuned)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, ax, path, title)


def plot_id_vs_shift(stats: pd.DataFrame, id_col: str, path: Path, title: str, styles: dict[str, dict],
                     curve: pd.DataFrame | None = None, curve_label: str = "WiSE-FT curve") -> None:
    """Mean shift accuracy against ID accuracy, one point per method (error bars: std over seeds),
    and the WiSE-FT curve through its per-alpha points: robustness gained at equal ID accuracy
    shows as a point above the others."""
    fig, ax = plt.subplots(figsize=(5.4, 4.2))
    if curve is not None and not curve.empty:
        x, y = curve[(id_col, "mean")].to_numpy(), curve[(SHIFT_MEAN, "mean")].to_numpy()
        ax.plot(x, y, "-", marker=".", ms=4, lw=1.2, color=styles["wiseft"]["color"], label=curve_label, zorder=1)
        for a, xa, ya in zip(curve.index, x, y):
            if a in (0.0, 1.0):
                ax.annotate(f"alpha {a:g}", (xa, ya), textcoords="offset points", xytext=(4, -10), fontsize=6)
    for m in stats.index:
        ax.errorbar(stats.loc[m, (id_col, "mean")], stats.loc[m, (SHIFT_MEAN, "mean")],
                    xerr=np.nan_to_num(stats.loc[m, (id_col, "std")]),
                    yerr=np.nan_to_num(stats.loc[m, (SHIFT_MEAN, "std")]),
                    fmt="o", ms=6, capsize=2, color=styles[m]["color"], label=m, zorder=2)
    ax.set_xlabel(f"ID accuracy (%): {id_col.removesuffix(' (ID)')}")
    ax.set_ylabel("mean accuracy over the shifts (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, ax, path, title)


# ---------------------------------------------------------------- text

def run_settings(records: list[dict], order: list[str]) -> pd.DataFrame:
    """One row per method: what its numbers come from (base method, regulariser, spurious
    captions, and which checkpoint of each seed's run is evaluated), from the runs' own records."""
    runs = {(r["method"], r["seed"]): r for r in records}  # a run has one record per target
    rows = {}
    for r in sorted(runs.values(), key=lambda r: r["seed"]):
        cfg, method = r.get("train_config"), r["method"]
        if cfg is None:
            rows[method] = {"Method": method, "Trains": "nothing: the teacher", "Regulariser": "–",
                            "Spurious captions": "–", "Checkpoint": "zero-shot weights"}
            continue
        base = METHODS[cfg["method"]]
        row = rows.setdefault(method, {"Method": method, "Checkpoint": []})
        row["Trains"] = f"WiSE-FT of {cfg['name']}, alpha {r['wiseft_alpha']}" if method == "wiseft" else cfg["method"]
        if base.regularizer is None:
            row["Regulariser"], row["Spurious captions"] = "–", "–"
        else:
            scale = "tau0 for both" if base.regularizer == "star" or cfg.get("kl_scale") == "teacher" \
                else "student's own scale"
            kind = "StarFT (label-masked)" if base.regularizer == "star" else "KL, no mask"
            row["Regulariser"] = f"{kind}, lambda {cfg['lambda']:g} {cfg['schedule']}, {scale}"
            row["Spurious captions"] = (f"{', '.join(cfg.get('spurious_types') or ['all pools'])}; "
                                        f"{cfg.get('spurious_sampling', 'all_templates').replace('_', ' ')}")
        selected = r.get("selected") or {"rule": "last", "epoch": cfg.get("epochs")}
        row["Checkpoint"].append(selected)
    for row in rows.values():
        chosen = row["Checkpoint"]
        if not isinstance(chosen, list):
            continue
        if all(s.get("epoch") == 0 for s in chosen):
            row["Checkpoint"] = "linear probe on the frozen teacher"
        elif all(s["rule"] == "last" for s in chosen):
            row["Checkpoint"] = f"last epoch ({', '.join(sorted({str(s['epoch']) for s in chosen}))})"
        else:
            row["Checkpoint"] = "best val worst-group: epoch " + ", ".join(str(s["epoch"]) for s in chosen) + " by seed"
    return pd.DataFrame([rows[m] for m in order if m in rows],
                        columns=["Method", "Trains", "Regulariser", "Spurious captions", "Checkpoint"])


def table_note(rows: pd.DataFrame, targets: list[str], cfg: dict, splits: dict[str, str],
               order: list[str]) -> list[str]:
    """What a table's numbers are: checkpoints, splits and, off the training set, which head."""
    ft, train = cfg["finetune"], cfg["train"]
    select = ft.get("select", "last")
    shown = [splits[t] for t in targets]
    split = ("Split: test." if set(shown) == {"test"}
             else "Splits: " + ", ".join(f"{t} {s}" for t, s in zip(targets, shown)) + ".")
    note = f"Checkpoints: {SELECT.get(select, select)} (`finetune.select: {select}`). {split}"
    off = [t for t in targets if t != train]
    if off:
        cells = rows[rows["target"].isin(targets) & (rows["head"] == "linear")]
        linear = [m for m in order if m in set(cells["method"])]
        on = [t for t in targets if t in set(cells["target"])]
        heads = ("every cell with the zero-shot head" if not linear else
                 f"linear head: {', '.join(linear)} on {', '.join(on)}, the zero-shot head elsewhere")
        note += f" {', '.join(off)}: zero-shot evaluations of the runs fine-tuned on `{train}`; {heads}."
    return [note, ""]


def teacher_note(pretrain: dict, source: str) -> str:
    """The synthetic world's tiny CLIP: how it was pre-trained and how good a teacher it is."""
    z = pretrain["zeroshot"]
    return (f"Teacher (`{source}`): the synthetic world's tiny CLIP, pre-trained for {pretrain['pretrain']['steps']} "
            f"steps ({pretrain['train_seconds']:.0f} s), logit scale {pretrain['final_logit_scale']:.1f} "
            f"({'fixed' if pretrain['pretrain'].get('logit_scale') else 'learned'}); on a fresh balanced set its "
            f"zero-shot class accuracy is {z['class_accuracy']:.1f}% (worst group {z['class_worst_group']:.1f}%) "
            f"and its scene (land/water) accuracy {z['scene_accuracy']:.1f}%.")


def pools_note(folder: str | Path) -> str:
    """The spurious pools of a synthetic experiment: how many templates of each use a word the
    world renders (the describe previews' count), i.e. how many the tiny CLIP can relate to pixels."""
    from ..synthetic.vocabulary import rendered_word_counts

    parts = []
    for path in sorted(Path(folder).glob("*.descriptions.parquet")):
        phrases = pd.read_parquet(path, columns=["phrase"])["phrase"].tolist()
        hits, _ = rendered_word_counts(phrases)
        parts.append(f"{path.name.split('.')[0]} {hits} of {len(phrases)} ({100 * hits / max(len(phrases), 1):.0f}%)")
    return (f"Spurious pools (`{folder}`): templates that use a word the synthetic world renders: "
            f"{', '.join(parts)}.")


# ---------------------------------------------------------------- writing

class Out(NamedTuple):
    """Where a section's files go: the report's (temporary) folder and the section's name prefix."""
    folder: Path
    prefix: str

    def name(self, stem: str) -> str:
        return f"{self.prefix}{stem}"

    def path(self, stem: str) -> Path:
        return self.folder / self.name(stem)


def section_prefixes(sections: list[dict]) -> list[str]:
    """No prefix for a single section; else the experiment's name (numbered if it repeats)."""
    if len(sections) == 1:
        return [""]
    seen: dict[str, int] = {}
    out = []
    for s in sections:
        seen[s["experiment"]] = seen.get(s["experiment"], 0) + 1
        n = seen[s["experiment"]]
        out.append(f"{s['experiment']}{'' if n == 1 else n}_")
    return out


def write_table(table: pd.DataFrame, out: Out, stem: str, caption: str) -> list[str]:
    """CSV and LaTeX files of a formatted table; returns its Markdown lines."""
    table.to_csv(out.path(f"{stem}.csv"))
    latex = table.reset_index().to_latex(index=False, escape=True, caption=caption.replace("_", r"\_"),
                                         label=f"tab:{out.name(stem)}")
    out.path(f"{stem}.tex").write_text(latex.replace("±", "$\\pm$"))
    # disable_numparse keeps "10.0" as written instead of re-formatting it as 10
    return [table.to_markdown(disable_numparse=True), ""]


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


# ---------------------------------------------------------------- reading

READING_COLUMNS = ["metric", "method", "versus", "mean", "std", "n", "verdict"]
PLAIN_FT = ("ft", "flyp")  # plain fine-tuning; the section's reference is the last of these it has
NO_VERDICT = "one seed: no verdict"


def headline_wide(v: View, shifts: list[str], groups: list[str], zeroshot: list[str]) -> pd.DataFrame:
    """One row per (method, seed), one column per headline metric of a section, from the rows its
    tables use (each target at its report split): ID accuracy and shift mean (each seed's mean
    over the shifts), each group target's worst-group and average, the zero-shot targets' mean."""
    parts = []
    if shifts:
        train = v.cfg["train"]
        wide = accuracy_wide(v.rows, shifts, SHIFT_MEAN, id_target=train)
        parts.append(wide[[f"{train} (ID)", SHIFT_MEAN]].set_axis([f"{train} ID accuracy", SHIFT_MEAN.lower()],
                                                                   axis=1))
    if groups:
        parts.append(wide_frame(v.rows, {f"{t} {METRICS[k].lower()}": (t, k)
                                         for t in groups for k in ("worst_group", "average")}))
    if zeroshot:
        parts.append(accuracy_wide(v.rows, zeroshot, "Mean")[["Mean"]].set_axis(["zero-shot mean"], axis=1))
    if not parts:
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["method", "seed"]))
    return pd.concat(parts, axis=1).dropna(axis=1, how="all")


def paired_difference(wide: pd.DataFrame, metric: str, method: str, versus: str) -> pd.Series:
    """Per seed, `method`'s value of `metric` minus `versus`'s of the same seed (seeds both have);
    against zero-shot evaluated on fewer seeds than `method`, minus zero-shot's mean."""
    a, b = wide.loc[method, metric].dropna(), wide.loc[versus, metric].dropna()
    if versus == "zeroshot" and not b.empty and not a.index.isin(b.index).all():
        return a - b.mean()
    return (a - b).dropna()


def verdict(mean: float, std: float, n: int) -> str:
    """The rough rule: a difference is lower/higher when |mean| > 2 std / sqrt(n), n >= 2 (and not
    float round-off: identical runs differ by exactly nothing)."""
    if n < 2:
        return NO_VERDICT
    if abs(mean) > max(2 * std / np.sqrt(n), 1e-9):
        return "lower" if mean < 0 else "higher"
    return "within noise"


def reading_frame(wide: pd.DataFrame, methods: list[str], reference: str | None) -> pd.DataFrame:
    """Every method but zero-shot against the reference and zero-shot on each headline metric:
    mean and sample std (ddof 1, as the tables') of the paired differences, n seeds, verdict;
    ordered by method, metric, then reference before zero-shot."""
    rows = []
    for method in methods:
        for metric in wide.columns:
            for versus in dict.fromkeys((reference, "zeroshot")):
                if method == "zeroshot" or versus in (None, method) or versus not in methods:
                    continue
                diff = paired_difference(wide, metric, method, versus)
                if diff.empty:
                    continue
                mean, std, n = diff.mean(), diff.std(ddof=1), len(diff)
                rows.append({"metric": metric, "method": method, "versus": versus, "mean": mean, "std": std,
                             "n": n, "verdict": verdict(mean, std, n)})
    return pd.DataFrame(rows, columns=READING_COLUMNS)


def _signed(x: float) -> str:
    return f"{x:+.1f}".replace("-", "−")


def _versus(name: str) -> str:
    return "zero-shot" if name == "zeroshot" else name


def statement(row) -> str:
    """One comparison in words: '- **flyp vs zero-shot**, shift mean: −3.1 ± 0.8 points (3 seeds): lower.'"""
    spread = "" if np.isnan(row["std"]) else f" ± {row['std']:.1f}"
    seeds = f"{row['n']} seed{'' if row['n'] == 1 else 's'}"
    return (f"- **{row['method']} vs {_versus(row['versus'])}**, {row['metric']}: {_signed(row['mean'])}{spread} "
            f"points ({seeds}): {row['verdict']}.")


VERDICT_MARKS = {"higher": "▲", "lower": "▼", "within noise": "≈", NO_VERDICT: "(1 seed)"}


def comparison_table(rows: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Methods x metrics, each cell a paired difference with its verdict's mark: '+1.0 ± 2.0 ≈'."""
    def cell(r) -> str:
        spread = "" if np.isnan(r["std"]) else f" ± {r['std']:.1f}"
        return f"{_signed(r['mean'])}{spread} {VERDICT_MARKS[r['verdict']]}"

    table = rows.assign(cell=rows.apply(cell, axis=1)).pivot(index="method", columns="metric", values="cell")
    return table.reindex(index=list(dict.fromkeys(rows["method"])), columns=metrics).fillna("")


def _by_metric(rows: pd.DataFrame) -> str:
    """'shift mean (ft, flyp), synthbirds worst-group (flyp)'"""
    return ", ".join(f"{metric} ({', '.join(g['method'])})" for metric, g in rows.groupby("metric", sort=False))


def check_summary(check: pd.DataFrame, why_not: str | None) -> str:
    """Does plain fine-tuning lower the shift mean or a worst-group accuracy below zero-shot?"""
    if why_not:
        return why_not
    lowered = check[check["verdict"] == "lower"]
    if not lowered.empty:
        return f"Plain fine-tuning lowers {_by_metric(lowered)}: the world shows the paper's phenomenon."
    return ("No plain fine-tuning run lowers the shift mean or a worst-group accuracy here: this world does not "
            "show the phenomenon the regulariser is meant to fix, so the rows below say little about it.")


def starft_line(frame: pd.DataFrame, starft: list[str], reference: str | None) -> str:
    """Where StarFT (any variant) is below the reference or zero-shot, by the rule, or that it is nowhere."""
    star = frame[frame["method"].isin(starft)]
    lower = star[star["verdict"] == "lower"]
    against = " or ".join(_versus(m) for m in dict.fromkeys((reference, "zeroshot")) if m in set(star["versus"]))
    if not lower.empty:
        line = "StarFT loses " + "; ".join(f"to {_versus(versus)} on {_by_metric(g)}"
                                           for versus, g in lower.groupby("versus", sort=False)) + "."
    elif (star["verdict"] == NO_VERDICT).all():
        line = f"StarFT ({', '.join(starft)}) against {against or 'no other run'}: too few seeds for a verdict."
    else:
        line = f"StarFT ({', '.join(starft)}) is nowhere below {against} by the rule above."
    below = star[(star["verdict"].isin(["within noise", NO_VERDICT])) & (star["mean"] < 0)]
    if not below.empty:
        line += " Below on the mean only (within noise or one seed): " + "; ".join(
            f"vs {_versus(versus)}, {_by_metric(g)}" for versus, g in below.groupby("versus", sort=False)) + "."
    return line


def reading_lines(v: View, wide: pd.DataFrame) -> list[str]:
    """The section's "Reading": what its headline metrics say, in words generated from the numbers
    (paired per-seed differences to zero-shot and to plain fine-tuning); writes reading.csv."""
    present = set(wide.index.get_level_values("method"))
    methods = [m for m in v.order if m in present]
    reference = next((m for m in reversed(PLAIN_FT) if m in methods), None)
    frame = reading_frame(wide, methods, reference)
    frame.to_csv(v.out.path("reading.csv"), index=False)
    lines = ["### Reading", "",
             "Verdicts follow a rough rule: **lower** or **higher** when |mean| > 2·std/√n over n ≥ 2 seeds, "
             "else **within noise**, and no verdict from one seed (rough: with few seeds a 95% band is wider, "
             "t = 4.3 for 3 seeds). Each comparison is a paired per-seed difference in points (the method minus "
             "the other run of the same seed; minus zero-shot's mean where zero-shot has fewer seeds), mean ± "
             f"sample std over seeds as in the tables; all of them in `{v.out.name('reading.csv')}`.", ""]
    if wide.columns.empty:
        return lines + ["No headline metric in this section.", ""]
    lines += ["Headline metrics: " + ", ".join(wide.columns) + ".", ""]

    # first: does plain fine-tuning hurt robustness here at all?
    check_metrics = [c for c in wide.columns if c == SHIFT_MEAN.lower() or c.endswith(" worst-group")]
    plain = [m for m in methods if m in PLAIN_FT]
    is_check = (frame["method"].isin(plain) & (frame["versus"] == "zeroshot") & frame["metric"].isin(check_metrics))
    check = frame[is_check]
    why_not = ("No shift or group target in this section: the check does not apply." if not check_metrics else
               "No plain fine-tuning run (ft, flyp) in this section: the check cannot be made." if not plain else
               "No zero-shot run in this section: the check cannot be made." if "zeroshot" not in methods else
               None if not check.empty else "No seed to compare: the check cannot be made.")
    lines += ["**Does fine-tuning hurt robustness in this world?**", ""]
    lines += [statement(r) for _, r in check.iterrows()] + ([""] if not check.empty else [])
    lines += [check_summary(check, why_not), ""]

    for versus in dict.fromkeys((reference, "zeroshot")):
        rows = frame[frame["versus"] == versus]
        if rows.empty:
            continue
        lines += [f"**Against {_versus(versus)}**{' (the plain fine-tuning reference)' if versus == reference else ''}"
                  ": mean ± std of the paired differences, points; ▲ higher, ▼ lower, ≈ within noise.", "",
                  comparison_table(rows, list(wide.columns)).to_markdown(), ""]

    means = wide.groupby(level="method").mean().reindex(methods)
    lines += ["**Best mean per metric:**", ""]
    for metric in wide.columns:
        col = means[metric].dropna()
        best = [m for m in col.index if np.isclose(col[m], col.max())]
        lines.append(f"- {metric}: {' = '.join(best)} ({col.max():.1f})")
    lines.append("")
    starft = [m for m in methods if m.startswith("starft")]
    if starft:
        lines += [starft_line(frame, starft, reference), ""]
    return lines


def section_lines(section: dict, out: Out, styles: dict[str, dict]) -> list[str]:
    """The Markdown of one section; writes its tables and figures under `out`."""
    cfg, records = section["config"], section["records"]
    ev = cfg.get("evaluate") or {}
    long = long_table(records)
    # a report section may show some of the experiment's methods (reports.<name>.methods)
    order = [m for m in method_order(cfg["finetune"]) if m in set(long["method"])]
    v = View(section["title"], cfg, records, at_report_split(long), at_report_split(curve_table(records)),
             report_splits(long), order, out, styles)
    lines = [f"## {v.title}", "",
             f"Experiment `{section['experiment']}`: every run fine-tuned on `{cfg['train']}`, then evaluated on "
             "each target below." + (ZEROSHOT_EVAL if set(v.rows["target"]) - {cfg["train"]} else ""), "",
             "### Runs", "", "What each row is: its training, regulariser and spurious captions as the runs "
             "recorded them, and which checkpoint was evaluated (`finetune.select`).", "",
             run_settings(records, v.order).to_markdown(index=False), ""]
    shifts = ordered_targets(v.rows, ("shift",), ev.get("shifts"))
    if shifts:
        lines += domain_shift_lines(v, shifts)
    groups = ordered_targets(v.rows, ("id", "group"), [cfg["train"], *(ev.get("groups") or ())], groups_only=True)
    if groups:
        lines += group_lines(v, groups)
    zeroshot = ordered_targets(v.rows, ("zeroshot",), ev.get("zeroshot"))
    if zeroshot:
        lines += zeroshot_lines(v, zeroshot)
    return lines + reading_lines(v, headline_wide(v, shifts, groups, zeroshot))


def build(sections: list[dict], name: str, out: Path, notes: list[str] | None = None) -> None:
    """Write report.md, the tables, figures and metrics_long.csv of `sections` into `out`.

    A section: {"title", "experiment", "config" (the experiment's validated config), "records"
    (its runs' evaluation records)}.
    """
    # one colour per method in every figure of the report, whichever section it is in
    styles = method_styles(list(dict.fromkeys(m for s in sections for m in method_order(s["config"]["finetune"]))))
    with atomic_dir(out) as tmp:
        # two sections of one experiment (different targets) share runs: each row once
        long = pd.concat([long_table(s["records"]) for s in sections])
        long = long.drop_duplicates(subset=["experiment", "target", "method", "seed", "split"])
        long.sort_values(["experiment", "target", "method", "seed", "split"]).to_csv(
            tmp / "metrics_long.csv", index=False)
        lines = [f"# {name}", ""]
        for note in notes or ():
            lines += [note, ""]
        lines += ["Accuracies in percent, mean ± std over seeds (the std of the per-seed values; a mean over "
                 "targets is each seed's mean, then mean ± std). Each target is reported at its *report split*: "
                 "test if evaluated, else its last evaluated split.", ""]
        for section, prefix in zip(sections, section_prefixes(sections)):
            lines += section_lines(section, Out(tmp, prefix), styles)
        (tmp / "report.md").write_text("\n".join(lines))


def load_sections(spec: dict) -> list[dict]:
    """The CLI's spec ({"sections": [{"title", "experiment", "config", "metrics": [paths]}]}) with
    each section's records read."""
    return [{k: s[k] for k in ("title", "experiment", "config")}
            | {"records": [json.loads(Path(p).read_text()) for p in s["metrics"]]} for s in spec["sections"]]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Tables and figures of experiments' evaluation records.")
    p.add_argument("--name", required=True, help="the report's name (its heading)")
    p.add_argument("--spec", required=True,
                   help='JSON (or a JSON file): {"sections": [{"title", "experiment", "config", "metrics": [...]}]}')
    p.add_argument("--pretrain-report", nargs="+", action="extend", default=[],
                   help="the synthetic tiny CLIP's pretrain_report.json (one per synthetic teacher)")
    p.add_argument("--pools", nargs="+", action="extend", default=[],
                   help="a synthetic experiment's pools folder (data/<experiment>/pools)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    spec = json.loads(a.spec if a.spec.lstrip().startswith("{") else Path(a.spec).read_text())
    notes = [teacher_note(json.loads(Path(r).read_text()), r) for r in a.pretrain_report]
    notes += [pools_note(folder) for folder in a.pools]
    build(load_sections(spec), a.name, Path(a.out), notes)
    print((Path(a.out) / "report.md").read_text())


if __name__ == "__main__":
    main()
