"""Report notes: the prose around the tables, from the records and the synthetic world's files.

run_settings (what each method's row comes from), table_note (a table's checkpoints, splits and
heads), teacher_note (the synthetic tiny CLIP as a teacher) and pools_note (its spurious pools).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..method.registry import METHODS, regularizer_words

# the KL target's mean mass on captions of an image's own superclass (other classes of it), over the
# run's logged steps and seeds: what the class mask leaves the target to carry of the group label
SHARE = "KL target on own superclass"
SELECT = {"last": "the last epoch of each run",
          "val_worst_group": "each run's epoch of best worst-group accuracy on the training set's val split"}


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
        if not base.uses_spurious:
            row["Regulariser"], row["Spurious captions"] = "–", "–"
        else:
            row["Regulariser"] = regularizer_words(base, cfg)
            row["Spurious captions"] = (f"{', '.join(cfg['spurious_types'] or ['all pools'])}; "
                                        f"{cfg['spurious_sampling'].replace('_', ' ')}")
        selected = r.get("selected") or {"rule": "last", "epoch": cfg.get("epochs")}
        row["Checkpoint"].append(selected)
        if r.get("kl_target_superclass_share") is not None:
            row.setdefault(SHARE, []).append(r["kl_target_superclass_share"])
    with_share = any(SHARE in row for row in rows.values())
    for row in rows.values():
        if with_share:   # a row without a KL target has no share: a dash, as its other empty cells
            row[SHARE] = f"{100 * np.mean(row[SHARE]):.1f}%" if SHARE in row else "–"
        chosen = row["Checkpoint"]
        if not isinstance(chosen, list):
            continue
        if all(s.get("epoch") == 0 for s in chosen):
            row["Checkpoint"] = "linear probe on the frozen teacher"
        elif all(s["rule"] == "last" for s in chosen):
            row["Checkpoint"] = f"last epoch ({', '.join(sorted({str(s['epoch']) for s in chosen}))})"
        else:
            row["Checkpoint"] = "best val worst-group: epoch " + ", ".join(str(s["epoch"]) for s in chosen) + " by seed"
    columns = ["Method", "Trains", "Regulariser", "Spurious captions", "Checkpoint"]
    if with_share:
        columns.insert(3, SHARE)
    return pd.DataFrame([rows[m] for m in order if m in rows], columns=columns)


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
            f"and its scene (land/water) accuracy {z['scene_accuracy']:.1f}%." + species_note(z))


def species_note(zeroshot: dict) -> str:
    """Each species' zero-shot accuracy, lowest first (a species the teacher misreads caps a group),
    and its accuracy on fresh renditions; empty for a report written before they were measured."""
    parts = []
    if species := zeroshot.get("species_accuracy"):
        ranked = sorted(species.items(), key=lambda kv: (kv[1], kv[0]))
        parts.append(" Per species (lowest first): " + ", ".join(f"{name} {acc:.1f}%" for name, acc in ranked) + ".")
    if styles := zeroshot.get("rendition_accuracy"):
        parts.append(" The source task's classes on fresh renditions (drawn as its shift sets are): "
                     + ", ".join(f"{style} {acc:.1f}%" for style, acc in styles.items()) + ".")
    return "".join(parts)


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
