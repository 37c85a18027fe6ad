"""Effective robustness: how far a method lies above the WiSE-FT line of plain fine-tuning.

The field (Taori et al. 2020, Wortsman et al.'s WiSE-FT) plots shift accuracy against ID accuracy
on logit-scaled axes, where models trained alike fall on a line; a method is *effectively* robust
when it lies above the line at its own ID accuracy. Here the line is the WiSE-FT curve of the
experiment's `finetune.wiseft_of` run (alpha from 0, the zero-shot weights, to 1, the fine-tuned
ones), joined segment by segment as straight lines on the logit axes:

    logit(a) = ln(p / (1 - p)),  p = a / 100 clipped to [LOGIT_EPS, 1 - LOGIT_EPS]
    gain     = shift mean of the method - the curve's shift mean at the method's ID accuracy

in accuracy points, per seed (the method's seed s against the curve of seed s; the mean curve
over seeds where the curve lacks seed s), then mean ± std over seeds. Where the curve passes a
given ID accuracy more than once (its ID accuracy need not rise with alpha), the highest of its
shift accuracies there is the line: a method is above only if it beats the best interpolation.
Outside the curve's ID range the gain is undefined (NaN): nothing is extrapolated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .tables import SHIFT_MEAN, accuracy_wide

LOGIT_EPS = 1e-4   # an accuracy of 0 or 100% has no finite logit; 1e-4 is below one image in 10,000
ABOVE_LINE = "Above interpolation line"
LOGIT_STATED = ("logit(a) = ln(p / (1 − p)) of the accuracy p = a / 100 (clipped to "
                f"[{LOGIT_EPS:g}, 1 − {LOGIT_EPS:g}])")


def logit(accuracy_percent):
    """The logit of accuracies given in percent (arrays or scalars)."""
    p = np.clip(np.asarray(accuracy_percent, dtype=float) / 100, LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p / (1 - p))


def expit_percent(z):
    """The inverse of `logit`, in percent."""
    return 100 / (1 + np.exp(-np.asarray(z, dtype=float)))


def curve_at(curve_id, curve_shift, id_accuracy: float) -> float:
    """The shift accuracy (%) of the piecewise-linear curve on logit axes through the points
    (curve_id[i], curve_shift[i]) (in alpha order) at `id_accuracy`: the highest where it passes
    there more than once, NaN outside its ID range."""
    x, y = logit(curve_id), logit(curve_shift)
    x0 = float(logit(id_accuracy))
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if not len(x) or np.isnan(x0):
        return float("nan")
    tol = 1e-9 * max(1.0, float(np.max(np.abs(x))))   # a point at a curve's end is on it, round-off or not
    hits = list(y[np.abs(x - x0) <= tol])
    for xa, xb, ya, yb in zip(x[:-1], x[1:], y[:-1], y[1:]):
        if min(xa, xb) - tol <= x0 <= max(xa, xb) + tol and xa != xb:
            hits.append(ya + (x0 - xa) / (xb - xa) * (yb - ya))
    return float(expit_percent(max(hits))) if hits else float("nan")


def curves_by_seed(curve_wide: pd.DataFrame, id_col: str) -> dict:
    """seed -> (ID, shift mean) arrays in alpha order, and None -> the mean curve over seeds, from
    a wide frame indexed by (alpha, seed) (accuracy_wide of the curve rows, by alpha)."""
    frame = curve_wide[[id_col, SHIFT_MEAN]].dropna()
    curves = {seed: (g.sort_index()[id_col].to_numpy(), g.sort_index()[SHIFT_MEAN].to_numpy())
              for seed, g in frame.reset_index("seed").groupby("seed")}
    mean = frame.groupby(level="alpha").mean().sort_index()
    curves[None] = (mean[id_col].to_numpy(), mean[SHIFT_MEAN].to_numpy())
    return curves


def interpolation_gain(points: pd.DataFrame, curve_wide: pd.DataFrame, id_col: str) -> pd.Series:
    """Per (method, seed) of `points` (accuracy_wide: the ID column `id_col` and SHIFT_MEAN): the
    shift-mean gain in points over the WiSE-FT curve at the point's ID accuracy (see the module)."""
    curves = curves_by_seed(curve_wide, id_col)
    gains = {}
    for (method, seed), row in points[[id_col, SHIFT_MEAN]].iterrows():
        cx, cy = curves.get(seed, curves[None])
        gains[(method, seed)] = row[SHIFT_MEAN] - curve_at(cx, cy, row[id_col])
    return pd.Series(gains, name=ABOVE_LINE, dtype=float).rename_axis(points.index.names)


def gain_wide(rows: pd.DataFrame, curve_rows: pd.DataFrame, train: str, shifts: list[str]) -> pd.DataFrame:
    """The domain-shift wide frame (per method and seed: ID, each shift, shift mean) with the
    ABOVE_LINE column, from the report-split rows of the runs and of the WiSE-FT curve."""
    id_col = f"{train} (ID)"
    wide = accuracy_wide(rows, shifts, SHIFT_MEAN, id_target=train)
    curve = accuracy_wide(curve_rows, shifts, SHIFT_MEAN, id_target=train, by="alpha")
    wide[ABOVE_LINE] = interpolation_gain(wide, curve, id_col)
    return wide


def gain_cells(wide: pd.DataFrame, order: list[str]) -> tuple[list[str], bool]:
    """The ABOVE_LINE column as table cells, one per method of `order` present in `wide`: '+1.2 ±
    0.3', with '(k of n seeds)' where only k of the method's n seeds lie within the curve's ID
    range, '' where none does; and whether any cell is blank or partial (then a footnote says why)."""
    cells, flagged = [], False
    for method in [m for m in order if m in set(wide.index.get_level_values(0))]:
        values = wide.loc[method, ABOVE_LINE]
        seeds = int(wide.loc[method].notna().any(axis=1).sum())
        defined = values.dropna()
        if defined.empty:
            cells.append("")
            flagged = True
            continue
        mean, std = defined.mean(), defined.std(ddof=1)
        # + 0.0 turns a rounded -0.0 (a point on the line, through logit round-off) into 0.0
        cell = f"{round(mean, 1) + 0.0:+.1f}" + ("" if np.isnan(std) else f" ± {std:.1f}")
        if len(defined) < seeds:
            cell += f" ({len(defined)} of {seeds} seeds)"
            flagged = True
        cells.append(cell)
    return cells, flagged
