"""Spuriosity drift in the tables: how far a run's view of the spurious captions moved from the teacher's.

Each evaluation record's split may carry `spuriosity_drift` (the divergence between the teacher's
and the run's distributions over the experiment's spurious captions on the target's evaluation
images): `masked_kl` (StarFT's label-masked KL, null on targets whose class names are not the
training set's) and `kl` (unmasked). A table's drift column is one of the two for all its targets,
never a mix: the masked KL where every cell has it, else the unmasked KL (the column name says
which). Older records have no drift: blank cells, and no column where no record of the table has one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .tables import DRIFT_KL, DRIFT_MASKED, summarise, wide_frame

DRIFT_NAMES = {DRIFT_MASKED: "masked KL", DRIFT_KL: "KL"}


def drift_metric(rows: pd.DataFrame, targets: list[str]) -> str | None:
    """The drift metric of a column over `targets`: DRIFT_MASKED if every row with a drift has it,
    DRIFT_KL if some lack it, None if no row has a drift."""
    sub = rows[rows["target"].isin(targets)]
    has = sub[DRIFT_KL].notna()
    if not has.any():
        return None
    return DRIFT_MASKED if sub.loc[has, DRIFT_MASKED].notna().all() else DRIFT_KL


def drift_label(metric: str, what: str = "") -> str:
    """'Drift (masked KL)', 'Drift, shift mean (KL)'."""
    return f"Drift{', ' + what if what else ''} ({DRIFT_NAMES[metric]})"


def drift_wide(rows: pd.DataFrame, targets: list[str], metric: str, label: str, by: str = "method") -> pd.DataFrame:
    """Per (`by`, seed): the mean of `metric` over `targets` (NaN where a target lacks it, rather
    than a mean of fewer targets), one column `label`."""
    wide = wide_frame(rows, {t: (t, metric) for t in targets}, by)
    return wide.mean(axis=1, skipna=False).to_frame(label)


def format_drift(mean: float, std: float) -> str:
    """Three decimals of a nat (the teacher's own drift, float noise around 0, reads 0.000);
    blank without a value."""
    if np.isnan(mean):
        return ""

    def nats(x: float) -> str:
        return f"{round(x, 3) + 0.0:.3f}"   # + 0.0: no "-0.000"

    return nats(mean) if np.isnan(std) else f"{nats(mean)} ± {nats(std)}"


def drift_cells(rows: pd.DataFrame, targets: list[str], index: list[str], what: str = "") -> tuple[str, list[str],
                                                                                                     pd.DataFrame] | None:
    """The drift column of a table over `targets` with rows `index` (methods): its label, its
    'mean ± std' cells over seeds (blank for a method without a drift) and the summary stats;
    None if no record of these targets has a drift."""
    metric = drift_metric(rows, targets)
    if metric is None:
        return None
    label = drift_label(metric, what)
    stats = summarise(drift_wide(rows, targets, metric, label), order=list(index))
    stats = stats.reindex(index)
    return label, [format_drift(m, s) for m, s in zip(stats[(label, "mean")], stats[(label, "std")])], stats


def drift_note(records: list[dict], targets: list[str]) -> list[str]:
    """What the drift column measures, with the pools and the scale the records state."""
    drifts = [m["spuriosity_drift"] for r in records if r["target"] in targets
              for m in r["splits"].values() if m.get("spuriosity_drift")]
    if not drifts:
        return []
    pools = sorted({p for d in drifts for p in d.get("pools") or ()})
    scales = sorted({str(d.get("scale")) for d in drifts})
    return [(f"**Drift**: KL(teacher ‖ run) in nats, between the teacher's and the run's distributions over the "
            f"experiment's spurious captions ({', '.join(pools) or 'pools not stated'}) on the target's evaluation "
            f"images, at the {' / '.join(scales)}'s logit scale; mean ± std over seeds, lower: closer to the "
            "teacher. *masked KL*: StarFT's label-masked KL (the captions of the image's own class masked "
            "out); *KL*: unmasked, used where a target's class names are not the training set's. Blank: the run's records have no drift "
            "(evaluated before it was measured)."), ""]
