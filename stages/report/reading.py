"""The Reading of a report section: paired per-seed differences of its headline metrics, in words.

headline_wide collects the headline metrics per (method, seed); each method is compared with
zero-shot and with plain fine-tuning (the reference), mean ± sample std of the paired differences
judged by a rough rule (verdict); reading_lines writes them as reading.csv and as Markdown (does
fine-tuning hurt robustness here at all, where StarFT wins and where it loses, and which raw
worst-group differences are threshold effects: not shared by the threshold-free measures).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .drift import drift_label, drift_metric, drift_wide
from .sections import View
from .tables import METRICS, SHIFT_MEAN, accuracy_wide, wide_frame

READING_COLUMNS = ["metric", "method", "versus", "mean", "std", "n", "verdict"]
VAL_BIAS, AUROC = "worst-group, val bias", "cross-group AUROC (x100)"   # headline labels, after the target's name
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
    elif v.cfg["train"] not in groups and v.cfg["train"] in set(v.rows["target"]):
        # no shift table: the training set's accuracy is a headline of its own (a transfer experiment)
        train = v.cfg["train"]
        parts.append(wide_frame(v.rows, {f"{train} ID accuracy": (train, "accuracy")}))
    if groups:
        parts.append(wide_frame(v.rows, {f"{t} {METRICS[k].lower()}": (t, k)
                                         for t in groups for k in ("worst_group", "average")}))
        # the threshold-free companions, AUROC in points too, so that every difference reads alike
        calibrated = wide_frame(v.rows, {label: (t, k) for t in groups for label, k in
                                         ((f"{t} {VAL_BIAS}", "worst_group_val_bias"),
                                          (f"{t} {AUROC}", "cross_group_auroc"))})
        parts.append(calibrated.assign(**{c: 100 * calibrated[c] for c in calibrated.columns if c.endswith(AUROC)}))
    if zeroshot:
        parts.append(accuracy_wide(v.rows, zeroshot, "Mean")[["Mean"]].set_axis(["zero-shot mean"], axis=1))
    if not parts:
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=["method", "seed"]))
    return pd.concat(parts, axis=1).dropna(axis=1, how="all")


def drift_headline(v: View, shifts: list[str], groups: list[str]) -> pd.DataFrame:
    """Per (method, seed), the drift of the section's tables: the shift mean's, each group
    target's, or the training set's where there is neither; no column where no record has a drift."""
    train = v.cfg["train"]
    columns = [("shift mean", shifts)] if shifts else []
    columns += [(t, [t]) for t in groups]
    if not shifts and train not in groups and train in set(v.rows["target"]):
        columns.append((train, [train]))
    parts = [drift_wide(v.rows, targets, metric, drift_label(metric, what))
             for what, targets in columns if (metric := drift_metric(v.rows, targets)) is not None]
    return pd.concat(parts, axis=1) if parts else pd.DataFrame()


def drift_sentence(drift: pd.DataFrame, methods: list[str]) -> list[str]:
    """StarFT's (each variant's) spuriosity drift against FLYP's, in words, whatever it is."""
    if drift.empty:
        return []
    present = set(drift.index.get_level_values("method"))
    starft = [m for m in methods if m.startswith("starft") and m in present]
    if "flyp" not in present or not starft:
        return [(f"Spuriosity drift: no {'StarFT' if 'flyp' in present else 'FLYP'} run with a drift here, so "
                 "StarFT's drift cannot be set against FLYP's."), ""]
    parts = []
    for method in starft:
        for col in drift.columns:
            diff = paired_difference(drift, col, method, "flyp")
            if diff.empty:
                continue
            a, b = drift.loc[method, col].dropna().mean(), drift.loc["flyp", col].dropna().mean()
            mean, std, n = diff.mean(), diff.std(ddof=1), len(diff)
            spread = "" if np.isnan(std) else f" ± {std:.2g}"
            judged = verdict(mean, std, n)
            parts.append(f"{col}: {method} {a:.3g} vs flyp {b:.3g} nats, paired difference "
                         f"{f'{mean:+.3g}'.replace('-', '−')}{spread} ({n} seed{'' if n == 1 else 's'}): "
                         + ("no verdict" if judged == NO_VERDICT else
                            f"{judged}{' (closer to the teacher)' if judged == 'lower' else ''}"))
    if not parts:
        return ["Spuriosity drift: StarFT and FLYP share no seed with a drift.", ""]
    return ["**Spuriosity drift, StarFT against FLYP** (lower: the run's view of the spurious captions stays "
            "closer to the teacher's): " + "; ".join(parts) + ".", ""]


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


def threshold_lines(frame: pd.DataFrame, wide: pd.DataFrame, groups: list[str]) -> list[str]:
    """Per group target: zero-shot's worst group raw and threshold-free, then every raw worst-group
    difference (higher or lower by the rule) that a threshold-free measure does not share (its
    difference has the other sign, or is within noise): a threshold effect, not the representation's."""
    lines = []
    for t in groups:
        raw, cal, auc = f"{t} worst-group", f"{t} {VAL_BIAS}", f"{t} {AUROC}"
        if cal not in wide.columns and auc not in wide.columns:
            continue
        if "zeroshot" in wide.index.get_level_values("method"):
            zs = wide.loc["zeroshot"].mean()
            values = [f"{zs[raw]:.1f} raw"] + ([f"{zs[cal]:.1f} with val's bias"] if pd.notna(zs.get(cal)) else [])
            lines += [f"Zero-shot on {t}: worst group " + ", ".join(values)
                      + (f"; cross-group AUROC {zs[auc] / 100:.3f}" if pd.notna(zs.get(auc)) else "") + ".", ""]
        effects = []
        for (method, versus), rows in frame[frame["metric"].isin([raw, cal, auc])].groupby(["method", "versus"],
                                                                                          sort=False):
            by = rows.set_index("metric")
            if raw not in by.index or by.loc[raw, "verdict"] not in ("higher", "lower"):
                continue
            sign = np.sign(by.loc[raw, "mean"])
            disagree = [m for m in (cal, auc) if m in by.index and
                        (by.loc[m, "verdict"] == "within noise" or np.sign(by.loc[m, "mean"]) != sign)]
            if disagree:
                words = {raw: "worst group", cal: "with val's bias", auc: "cross-group AUROC (x100)"}
                effects.append(f"- **{method} vs {_versus(versus)}** on {t}: "
                               + "; ".join(f"{words[m]} {_signed(by.loc[m, 'mean'])} ± {by.loc[m, 'std']:.1f} "
                                           f"({by.loc[m, 'verdict']})" for m in (raw, cal, auc) if m in by.index)
                               + ".")
        lines += ([f"**Threshold effects on {t}** (a raw worst-group difference the threshold-free measures do not "
                   "share: theirs has the other sign or is within noise):", ""] + effects + [""] if effects else
                  [f"No threshold effect on {t}: every raw worst-group difference by the rule above has the same "
                   "sign, beyond noise, with val's bias and in the cross-group AUROC.", ""])
    return lines


def shift_lines(v: View, shifts: list[str], methods: list[str], reference: str | None) -> list[str]:
    """Per shift: where plain fine-tuning falls below zero-shot (ImageNet-R and -Sketch in the
    paper, hidden in the shift mean) and what StarFT keeps there, against zero-shot and the reference."""
    plain = [m for m in methods if m in PLAIN_FT]
    if len(shifts) < 2 or not plain or "zeroshot" not in methods:
        return []
    wide = accuracy_wide(v.rows, shifts, SHIFT_MEAN, id_target=v.cfg["train"])[shifts]
    frame = reading_frame(wide, methods, reference)
    lowered = frame[frame["method"].isin(plain) & (frame["versus"] == "zeroshot") & (frame["verdict"] == "lower")]
    if lowered.empty:
        return [f"Per shift ({', '.join(shifts)}): no plain fine-tuning run ({', '.join(plain)}) is below "
                "zero-shot on any one of them by the rule above.", ""]
    lines = ["Per shift, plain fine-tuning falls below zero-shot on " + _by_metric(lowered) + ":", ""]
    starft = [m for m in methods if m.startswith("starft")]
    for shift in dict.fromkeys(lowered["metric"]):
        rows = frame[(frame["metric"] == shift) & (frame["method"].isin([*plain, *starft]))]
        lines += [statement(r) for _, r in rows.iterrows()
                  if r["versus"] == "zeroshot" or r["method"] in starft]
    return lines + [""]


def reading_lines(v: View, wide: pd.DataFrame, drift: pd.DataFrame | None = None,
                  shifts: list[str] | None = None, groups: list[str] | None = None) -> list[str]:
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
        return lines + ["No headline metric in this section.", ""] + drift_sentence(drift if drift is not None
                                                                                     else pd.DataFrame(), methods)
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
    lines += shift_lines(v, shifts or [], methods, reference)
    lines += threshold_lines(frame, wide, groups or [])

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
    return lines + drift_sentence(drift if drift is not None else pd.DataFrame(), methods)
