"""Report stage's build and command line: a report's sections into report.md, tables and figures.

An experiment fine-tunes once on its `train` data set and evaluates every run on many targets;
each (run, target) is one evaluation record (`results/runs/<experiment>/<method>/seed<seed>/eval/
<target>.json`, role `id`, `shift`, `group` or `zeroshot`). A report is a list of *sections*, one
per experiment: a plain experiment report is one section, a composite report (e.g.
results/waterbirds) several, a section possibly restricted to some targets and some methods of its
experiment. Each section ends with a Reading: paired per-seed differences of its headline metrics
against zero-shot and plain fine-tuning, in words (does fine-tuning hurt robustness here at all,
where StarFT wins and where it loses).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ..common.io import atomic_dir
from .figures import method_styles
from .notes import pools_note, run_settings, teacher_note
from .protocol import chosen_marks, protocol_lines, run_choices
from .reading import drift_headline, headline_wide, reading_lines
from .sections import View, domain_shift_lines, group_lines, id_lines, zeroshot_lines
from .summary import is_summarised, summary_lines
from .tables import Out, at_report_split, curve_table, long_table, method_order, ordered_targets, report_splits

ZEROSHOT_EVAL = (
    " Targets other than the training set are zero-shot evaluations: each run's (fine-tuned) text encoder "
    "builds a zero-shot head from the target's class names and templates; a run's linear head is used only "
    "on targets in the training label space (the records' `head` says which).")


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


def shared_lines(shared: dict[str, dict[str, list[int]]]) -> list[str]:
    """The note on a section's runs that another experiment trained ({owner: {method: [seeds]}}):
    the same settings give one job and one checkpoint, evaluated here with this section's settings."""
    lines = []
    for owner, runs in shared.items():
        listed = ", ".join(f"{m} (seed {', '.join(str(s) for s in seeds)})" for m, seeds in runs.items())
        lines += [f"Runs shared with experiment `{owner}` (the same data, teacher, hyper-parameters and seed: "
                  f"trained once, by `{owner}`; evaluated here with this experiment's settings): {listed}.", ""]
    return lines


def section_lines(section: dict, out: Out, styles: dict[str, dict]) -> list[str]:
    """The Markdown of one section; writes its tables and figures under `out`."""
    cfg, records = section["config"], section["records"]
    ev = cfg.get("evaluate") or {}
    long = long_table(records)
    # a report section may show some of the experiment's methods (reports.<name>.methods)
    order = [m for m in method_order(cfg["finetune"]) if m in set(long["method"])]
    splits = report_splits(long)
    choices = run_choices(records, cfg["train"])
    v = View(section["title"], cfg, records, at_report_split(long), at_report_split(curve_table(records)),
             splits, order, out, styles, chosen_marks(choices, splits))
    lines = [f"## {v.title}", "",
             f"Experiment `{section['experiment']}`: every run fine-tuned on `{cfg['train']}`, then evaluated on "
             "each target below." + (ZEROSHOT_EVAL if set(v.rows["target"]) - {cfg["train"]} else ""), "",
             "### Runs", "", "What each row is: its training, regulariser and spurious captions as the runs "
             "recorded them, and which checkpoint was evaluated (`finetune.select`).", "",
             run_settings(records, v.order).to_markdown(index=False), ""]
    lines += shared_lines(section.get("shared") or {})
    if choices:
        lines += ["Chosen by the runs: " + "; ".join(
            f"{c['what']} of {', '.join(c['methods'])} on `{c['dataset']}` {c['split']}" for c in choices)
            + ". A table column showing such a split is marked †.", ""]
    shifts = ordered_targets(v.rows, ("shift",), ev.get("shifts"))
    if shifts:
        lines += domain_shift_lines(v, shifts)
    groups = ordered_targets(v.rows, ("id", "group"), [cfg["train"], *(ev.get("groups") or ())], groups_only=True)
    if groups:
        lines += group_lines(v, groups)
    if not shifts and cfg["train"] not in groups and cfg["train"] in set(v.rows["target"]):
        lines += id_lines(v)
    zeroshot = ordered_targets(v.rows, ("zeroshot",), ev.get("zeroshot"))
    if zeroshot:
        lines += zeroshot_lines(v, zeroshot)
    return lines + reading_lines(v, headline_wide(v, shifts, groups, zeroshot), drift_headline(v, shifts, groups),
                                 shifts, groups)


def build(sections: list[dict], name: str, out: Path, notes: list[str] | None = None,
          datasets: dict[str, dict] | None = None) -> None:
    """Write report.md, the tables, figures and metrics_long.csv of `sections` into `out`.

    A section: {"title", "experiment", "config" (the experiment's validated config), "records"
    (its runs' evaluation records), optionally "shared" ({owner: {method: [seeds]}}, the runs another
    experiment trained)}. datasets: the targets' configs (`datasets.<name>`: the
    protocol table's templates).
    """
    # one colour per method in every figure of the report, whichever section it is in
    styles = method_styles(list(dict.fromkeys(m for s in sections for m in method_order(s["config"]["finetune"]))))
    with atomic_dir(out) as tmp:
        # two sections of one experiment (different targets) share runs: each row once
        long = pd.concat([long_table(s["records"]) for s in sections])
        long = long.drop_duplicates(subset=["experiment", "target", "method", "seed", "split"])
        long.sort_values(["experiment", "target", "method", "seed", "split"]).to_csv(
            tmp / "metrics_long.csv", index=False)
        lines = [f"# {name}", ""] + protocol_lines(sections, datasets or {})
        for note in notes or ():
            lines += [note, ""]
        lines += ["Accuracies in percent, mean ± std over seeds (the std of the per-seed values; a mean over "
                 "targets is each seed's mean, then mean ± std). Each target is reported at its *report split*: "
                 "test if evaluated, else its last evaluated split.", ""]
        if is_summarised(sections):
            lines += summary_lines(sections, Out(tmp, ""))
        for section, prefix in zip(sections, section_prefixes(sections)):
            lines += section_lines(section, Out(tmp, prefix), styles)
        (tmp / "report.md").write_text("\n".join(lines))


def load_sections(spec: dict) -> list[dict]:
    """The CLI's spec ({"sections": [{"title", "experiment", "config", "metrics": [paths]}]}) with
    each section's records read."""
    return [{k: s[k] for k in ("title", "experiment", "config")}
            | {"records": [json.loads(Path(p).read_text()) for p in s["metrics"]]} for s in spec["sections"]]


def main(argv=None) -> None:
    """The command line: build the report into --out (report.md, tables, figures) and print report.md."""
    p = argparse.ArgumentParser(description="Tables and figures of experiments' evaluation records.")
    p.add_argument("--name", required=True, help="the report's name (its heading)")
    p.add_argument("--spec", required=True,
                   help='JSON (or a JSON file): {"sections": [{"title", "experiment", "config", "metrics": [...]}], '
                        '"datasets": {target: its datasets.<target> config}}')
    p.add_argument("--pretrain-report", nargs="+", action="extend", default=[],
                   help="the synthetic tiny CLIP's pretrain_report.json (one per synthetic teacher)")
    p.add_argument("--pools", nargs="+", action="extend", default=[],
                   help="a synthetic experiment's pools folder (data/<experiment>/pools)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    spec = json.loads(a.spec if a.spec.lstrip().startswith("{") else Path(a.spec).read_text())
    notes = [teacher_note(json.loads(Path(r).read_text()), r) for r in a.pretrain_report]
    notes += [pools_note(folder) for folder in a.pools]
    build(load_sections(spec), a.name, Path(a.out), notes, spec.get("datasets"))
    print((Path(a.out) / "report.md").read_text())


if __name__ == "__main__":
    main()
