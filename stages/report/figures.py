"""Report figures: per-group accuracy bars, WiSE-FT curves and ID vs shift, one style per method.

matplotlib draws headless here (the Agg backend, chosen before pyplot is imported); method_styles
gives each method of a report one colour and hatch, used by every figure of it. ID vs shift is
drawn on logit-scaled axes (robustness.logit), ticks labelled in accuracy %.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from .robustness import expit_percent, logit  # noqa: E402
from .tables import GROUP_METRICS as GROUP_LABELS  # noqa: E402
from .tables import METRICS, SHIFT_MEAN  # noqa: E402

HATCHES = ("", "//", "..", "xx", "\\\\", "oo")  # one per ten methods of method_styles


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


def fit_title(fig, ax, title: str) -> None:
    """The axes' title, wrapped onto more lines until it fits the figure's width (tight_layout
    makes room above for its height, never beside for its width)."""
    text = ax.set_title(title)
    renderer = fig.canvas.get_renderer()
    width = len(title)
    while text.get_window_extent(renderer).width > 0.96 * fig.bbox.width and width > 10:
        width = int(width * 0.85)
        text.set_text(textwrap.fill(title, width))


def _save(fig, ax, path: Path, title: str) -> None:
    fit_title(fig, ax, title)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _grouped_bars(ax, stats: pd.DataFrame, columns: list, labels: list[str], ylabel: str,
                  styles: dict[str, dict] | None) -> None:
    """One cluster of bars per column of `stats` (methods x (column, mean|std)), one bar per method
    (std as error bars), on a 0-100 axis with the methods' legend below."""
    methods = list(stats.index)
    styles = styles or method_styles(methods)
    x = np.arange(len(columns))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        means = [stats.loc[m, (c, "mean")] for c in columns]
        stds = np.nan_to_num([stats.loc[m, (c, "std")] for c in columns])
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=m,
               color=styles[m]["color"], hatch=styles[m]["hatch"], edgecolor="white", linewidth=0)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=min(7, len(methods)), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.grid(axis="y", alpha=0.3)


def plot_groups(stats: pd.DataFrame, groups: list[str], path: Path, title: str,
                styles: dict[str, dict] | None = None) -> None:
    """Bar chart of each method's per-group accuracy (mean, std as error bars) from `stats`
    (methods x (group, mean|std)), saved to `path`."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.6))
    _grouped_bars(ax, stats, groups, groups, "accuracy (%)", styles)
    _save(fig, ax, path, title)


def plot_threshold(stats: pd.DataFrame, path: Path, title: str, styles: dict[str, dict] | None = None) -> bool:
    """Each method's worst group three ways, side by side: raw, with val's bias, label-free (mean,
    std as error bars); False (nothing drawn) where no record has the threshold-free values."""
    keys = [k for k in ("worst_group", "worst_group_val_bias", "worst_group_label_free")
            if (k, "mean") in stats.columns and stats[(k, "mean")].notna().any()]
    if len(keys) < 2:
        return False
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(keys), 3.6))
    _grouped_bars(ax, stats, keys, [GROUP_LABELS[k] for k in keys], "worst-group accuracy (%)", styles)
    _save(fig, ax, path, title)
    return True


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


def logit_axis(ax, which: str) -> None:
    """A logit-scaled axis ("x" or "y") for accuracies in percent: positions logit(a), ticks at
    round accuracies."""
    getattr(ax, f"set_{which}scale")("function", functions=(logit, expit_percent))
    axis = getattr(ax, f"{which}axis")
    axis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]))
    axis.set_major_formatter(FuncFormatter(lambda a, _: f"{a:g}"))


def plot_id_vs_shift(stats: pd.DataFrame, id_col: str, path: Path, title: str, styles: dict[str, dict],
                     curve: pd.DataFrame | None = None, curve_label: str = "WiSE-FT curve") -> None:
    """Mean shift accuracy against ID accuracy on logit axes, one point per method (error bars: std
    over seeds), and the WiSE-FT curve through its per-alpha mean points: a point above the curve
    is robustness that interpolation does not give (the report's column *above interpolation line*)."""
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    logit_axis(ax, "x")
    logit_axis(ax, "y")
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
    ax.set_xlabel(f"ID accuracy (%, logit scale): {id_col.removesuffix(' (ID)')}")
    ax.set_ylabel("mean accuracy over the shifts (%, logit scale)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, ax, path, title)


def plot_drift(stats: pd.DataFrame, drift: pd.DataFrame, drift_col: str, path: Path, title: str,
               styles: dict[str, dict]) -> None:
    """Worst-group accuracy against spuriosity drift, one point per method with a drift (error
    bars: std over seeds): does a method's worst group move with how far it drifted from the
    teacher's view of the spurious captions? `stats`: a group table's summary (worst_group),
    `drift`: the drift column's summary (drift.drift_cells), both indexed by method."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for m in drift.index:
        x = drift.loc[m, (drift_col, "mean")]
        if np.isnan(x) or m not in stats.index:
            continue
        ax.errorbar(x, stats.loc[m, ("worst_group", "mean")], xerr=np.nan_to_num(drift.loc[m, (drift_col, "std")]),
                    yerr=np.nan_to_num(stats.loc[m, ("worst_group", "std")]), fmt="o", ms=6, capsize=2,
                    color=styles[m]["color"], label=m)
    ax.set_xlabel(f"spuriosity drift, {drift_col.removeprefix('Drift (').removesuffix(')')} (nats)")
    ax.set_ylabel("worst-group accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, ax, path, title)
