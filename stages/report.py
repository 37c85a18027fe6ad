"""Report stage: paper-style tables (Markdown, CSV, LaTeX) and figures, mean ± std over seeds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .finetune.methods import METHODS  # noqa: E402
from .io import atomic_dir  # noqa: E402

HATCHES = ("", "//", "..", "xx", "\\\\", "oo")  # one per ten methods of method_styles
METRICS = {"worst_group": "Worst-group", "average": "Average", "adjusted_average": "Adj. average"}


def group_labels(classnames: list[str], group_names: list[str]) -> list[str]:
    return [f"{c} / {g}" for c in classnames for g in group_names]


def long_table(runs: list[dict], groups: list[str]) -> pd.DataFrame:
    """One row per (method, seed, split) with every metric, the raw material of all tables."""
    rows = []
    for r in runs:
        for split, m in r["splits"].items():
            row = {"method": r["method"], "seed": r["seed"], "split": split}
            row.update({k: m[k] for k in METRICS})
            row.update({g: a for g, a in zip(groups, m["group_accuracy"])})
            rows.append(row)
    return pd.DataFrame(rows)


def summary_table(long: pd.DataFrame, split: str, order: list[str]) -> pd.DataFrame:
    """Mean and std over seeds per method, methods in `order`; columns are (metric, mean|std)."""
    df = long[long["split"] == split].drop(columns=["split", "seed"])
    stats = df.groupby("method").agg(["mean", "std"])
    counts = df.groupby("method").size().rename("seeds")
    stats = stats.reindex([m for m in order if m in stats.index])
    stats[("seeds", "")] = counts
    return stats


def format_pm(stats: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """'mean ± std' strings (std omitted for a single seed)."""
    out = pd.DataFrame(index=stats.index)
    for col in dict.fromkeys(c for c, _ in stats.columns if c != "seeds"):
        mean, std = stats[(col, "mean")], stats[(col, "std")]
        out[METRICS.get(col, col)] = [
            f"{m:.{digits}f}" if np.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(mean, std)]
    out["Seeds"] = stats[("seeds", "")]
    out.index.name = "Method"
    return out


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
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=min(7, len(methods)), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def run_settings(runs: list[dict], order: list[str]) -> pd.DataFrame:
    """One row per method: what its numbers come from (base method, regulariser, spurious
    captions, and which checkpoint of each seed's run is evaluated), from the runs' own records."""
    rows = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
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


def wiseft_curve(runs: list[dict], split: str) -> pd.DataFrame:
    rows = [{"seed": r["seed"], "alpha": p["alpha"], **{k: p[split][k] for k in METRICS}}
            for r in runs if "wiseft" in r for p in r["wiseft"]]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).drop(columns="seed").groupby("alpha").agg(["mean", "std"])


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
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def build(runs: list[dict], cfg: dict, dataset: str, out: Path, notes: list[str] | None = None) -> None:
    groups = group_labels(cfg["classnames"], cfg["group_names"])
    order = list(dict.fromkeys(["zeroshot", *cfg["finetune"]["methods"], "wiseft"]))
    styles = method_styles(order)  # one colour per method in every figure of the report
    long = long_table(runs, groups)
    splits = [s for s in ("test", "val", "train") if s in set(long["split"])]
    with atomic_dir(out) as tmp:
        long.sort_values(["split", "method", "seed"]).to_csv(tmp / "metrics_long.csv", index=False)
        lines = [f"# {dataset}: worst-group evaluation", ""]
        if notes:
            lines += notes + [""]
        lines += [
            "Accuracies in percent, mean ± std over seeds. **Worst-group**: the lowest accuracy over the "
            "(class, spurious attribute) groups. **Average**: accuracy over all samples of the split. "
            "**Adj. average**: group accuracies weighted by the *training* group proportions (the "
            "Waterbirds literature's convention). Per-group columns are `class / attribute`.", ""]
        lines += ["## Runs", "", "What each row is: its training, regulariser and spurious captions as the "
                  "runs recorded them, and which checkpoint was evaluated (`finetune.select`).", "",
                  run_settings(runs, order).to_markdown(index=False), ""]
        for split in splits:
            stats = summary_table(long, split, order)
            table = format_pm(stats)
            table.to_csv(tmp / f"table_{split}.csv")
            latex = table.reset_index().to_latex(index=False, caption=f"{dataset}, {split} split",
                                                 label=f"tab:{dataset}-{split}")
            (tmp / f"table_{split}.tex").write_text(latex.replace("±", "$\\pm$"))
            # disablenumparse keeps "10.0" as written instead of re-formatting it as 10
            lines += [f"## {split} split", "", table.to_markdown(disable_numparse=True), ""]
            plot_groups(stats, groups, tmp / f"groups_{split}.png", f"{dataset} {split}: per-group accuracy",
                        styles)
            lines += [f"![per-group accuracy, {split}](groups_{split}.png)", ""]
        curve = wiseft_curve(runs, "test")
        if not curve.empty:
            wise_of = cfg["finetune"]["wiseft_of"]
            plot_wiseft(curve, tmp / "wiseft_test.png", f"{dataset} test: WiSE-FT of {wise_of}", styles,
                        ends=("zeroshot", wise_of))
            curve.to_csv(tmp / "wiseft_test.csv")
            lines += ["## WiSE-FT", "",
                      f"theta = (1 - alpha) * theta_zeroshot + alpha * theta_{wise_of}; the `wiseft` row "
                      f"of the tables is alpha = {cfg['finetune']['wiseft_alpha']}.", "",
                      "![WiSE-FT curve](wiseft_test.png)", ""]
        (tmp / "report.md").write_text("\n".join(lines))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Tables and figures of a dataset's runs.")
    p.add_argument("--dataset", required=True)
    p.add_argument("--dataset-config", required=True, help="JSON of the validated dataset config")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json files of the runs")
    p.add_argument("--pretrain-report", default=None, help="the tiny CLIP's pretrain_report.json")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    runs = [json.loads(Path(m).read_text()) for m in a.metrics]
    notes = []
    if a.pretrain_report:
        r = json.loads(Path(a.pretrain_report).read_text())
        z = r["zeroshot"]
        notes.append(
            f"Teacher: the synthetic world's tiny CLIP, pre-trained for {r['pretrain']['steps']} steps "
            f"({r['train_seconds']:.0f} s), logit scale {r['final_logit_scale']:.1f} "
            f"({'fixed' if r['pretrain'].get('logit_scale') else 'learned'}); on a fresh balanced set its "
            f"zero-shot class accuracy is {z['class_accuracy']:.1f}% (worst group {z['class_worst_group']:.1f}%) "
            f"and its scene (land/water) accuracy {z['scene_accuracy']:.1f}%.")
    build(runs, json.loads(a.dataset_config), a.dataset, Path(a.out), notes)
    print((Path(a.out) / "report.md").read_text())


if __name__ == "__main__":
    main()
