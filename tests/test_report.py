from pathlib import Path

import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from stages.report import build, method_styles

CFG = {"classnames": ["landbird", "waterbird"], "group_names": ["land", "water"],
       "finetune": {"methods": ["zeroshot", "ft", "wiseft"], "wiseft_of": "ft", "wiseft_alpha": 0.5}}


def run(method, seed, worst, groups, curve=None):
    m = {"worst_group": worst, "average": sum(groups) / 4, "adjusted_average": groups[0], "group_accuracy": groups}
    r = {"method": method, "seed": seed, "splits": {"test": m}}
    if curve:
        r["wiseft"] = [{"alpha": a, "test": {**m, "worst_group": w, "average": w + 10}} for a, w in curve]
    return r


def test_tables_are_mean_and_std_over_seeds(tmp_path):
    runs = [run("ft", 0, 70.0, [90.0, 70.0, 80.0, 100.0]), run("ft", 1, 74.0, [94.0, 74.0, 80.0, 100.0]),
            run("zeroshot", 0, 60.0, [100.0, 60.0, 70.0, 100.0]),
            run("wiseft", 0, 72.0, [90.0, 72.0, 80.0, 100.0], curve=[(0.0, 60.0), (1.0, 70.0)]),
            run("wiseft", 1, 76.0, [90.0, 76.0, 80.0, 100.0], curve=[(0.0, 60.0), (1.0, 74.0)])]
    build(runs, CFG, "toy", tmp_path / "out")
    table = pd.read_csv(tmp_path / "out/table_test.csv", index_col=0)
    assert list(table.index) == ["zeroshot", "ft", "wiseft"]          # config order, wiseft once
    # ft: worst-group 70 and 74 -> mean 72, sample std 2.83; landbird/land 90 and 94 -> 92 ± 2.8
    assert table.loc["ft", "Worst-group"] == "72.0 ± 2.8"
    assert table.loc["ft", "landbird / land"] == "92.0 ± 2.8"
    assert table.loc["zeroshot", "Worst-group"] == "60.0"              # one seed: no std
    assert table.loc["ft", "Seeds"] == 2
    curve = pd.read_csv(tmp_path / "out/wiseft_test.csv", header=[0, 1], index_col=0)
    assert curve.loc[1.0, ("worst_group", "mean")] == pytest.approx(72.0)
    report = (tmp_path / "out/report.md").read_text()
    assert "| ft       | 72.0 ± 2.8" in report and "wiseft_test.png" in report
    assert "$\\pm$" in (tmp_path / "out/table_test.tex").read_text()


def test_method_colours_are_distinct_for_up_to_sixty_methods():
    for n in range(1, 61):
        styles = method_styles([f"m{i}" for i in range(n)])
        colours = [to_rgb(s["color"]) for s in styles.values()]
        assert len(set(colours)) == n, n
    eleven = method_styles(["zeroshot", *[f"m{i}" for i in range(9)], "wiseft"])
    assert to_rgb(eleven["zeroshot"]["color"]) != to_rgb(eleven["wiseft"]["color"])
    many = method_styles([f"m{i}" for i in range(80)])  # past the palettes: still one colour each
    assert len({to_rgb(s["color"]) for s in many.values()}) == 80


def legend_colours(fig):
    """label -> colour of what the legend shows (a bar group's or a line's)."""
    out = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            bar_group = hasattr(handle, "patches")
            out[label] = to_rgb(handle.patches[0].get_facecolor() if bar_group else handle.get_color())
    return out


def test_a_method_keeps_its_colour_in_every_figure_of_a_report(tmp_path, monkeypatch):
    figures = {}
    save = Figure.savefig

    def record(fig, path, *args, **kwargs):
        figures[Path(path).name] = legend_colours(fig)
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    methods = ["zeroshot", "lp", "ft", "lpft", "flyp", "flyp_kl", "starft", "starft_ce", "s10", "s50", "wiseft"]
    cfg = {**CFG, "finetune": {**CFG["finetune"], "methods": methods}}
    groups = [90.0, 70.0, 80.0, 100.0]
    runs = [run(m, 0, 70.0, groups, curve=[(0.0, 60.0), (0.5, 65.0), (1.0, 70.0)] if m == "wiseft" else None)
            for m in methods]
    # the val split lacks `lp`: the per-method colours must not shift with the methods present
    for r in runs:
        if r["method"] != "lp":
            r["splits"]["val"] = r["splits"]["test"]
    build(runs, cfg, "toy", tmp_path / "out")
    test, val, wise = figures["groups_test.png"], figures["groups_val.png"], figures["wiseft_test.png"]
    assert list(test) == methods and "lp" not in val
    assert len(set(test.values())) == len(methods)
    assert all(val[m] == test[m] for m in val)
    assert wise["wiseft, worst-group"] == wise["wiseft, average"] == test["wiseft"]
    assert wise["zeroshot (alpha 0)"] == test["zeroshot"] and wise["ft (alpha 1)"] == test["ft"]


def test_runs_section_says_what_each_row_comes_from(tmp_path):
    groups = [90.0, 70.0, 80.0, 100.0]
    star = {"method": "starft", "name": "starft", "lambda": 0.5, "schedule": "diminishing", "epochs": 10,
            "spurious_types": ["background"], "spurious_sampling": "type_then_template", "kl_scale": "student"}
    kl = {**star, "method": "flyp_kl", "name": "kl_teacher", "lambda": 5.0, "kl_scale": "teacher", "spurious_types": None}
    runs = [run("zeroshot", 0, 60.0, groups),
            {**run("starft", 0, 70.0, groups), "train_config": star, "selected": {"rule": "last", "epoch": 10}},
            {**run("kl_teacher", 0, 71.0, groups), "train_config": kl,
             "selected": {"rule": "val_worst_group", "epoch": 3}},
            {**run("kl_teacher", 1, 72.0, groups), "train_config": kl,
             "selected": {"rule": "val_worst_group", "epoch": 7}}]
    cfg = {**CFG, "finetune": {**CFG["finetune"], "methods": ["zeroshot", "starft", "kl_teacher"]}}
    build(runs, cfg, "toy", tmp_path / "out")
    report = (tmp_path / "out/report.md").read_text()
    section = report[report.index("## Runs"):report.index("## test split")]
    lines = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert "zero-shot weights" in lines["zeroshot"]
    assert "StarFT (label-masked), lambda 0.5 diminishing, tau0 for both" in lines["starft"]
    assert "background; type then template" in lines["starft"] and "last epoch (10)" in lines["starft"]
    assert "| flyp_kl " in lines["kl_teacher"] and "KL, no mask, lambda 5" in lines["kl_teacher"]
    assert "all pools" in lines["kl_teacher"] and "best val worst-group: epoch 3, 7 by seed" in lines["kl_teacher"]
