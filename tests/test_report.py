import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from stages.report.cli import build, main
from stages.report.figures import method_styles

GROUPS = ["landbird on land", "landbird on water", "waterbird on land", "waterbird on water"]
SEEDS = (0, 1, 2)
# accuracy = method base + target offset + the target's per-seed noise: distinct noise per target,
# so that the std of a mean column (std of per-seed means) differs from any mean of stds
BASE = {"zeroshot": 50.0, "ft": 70.0, "flyp": 72.0, "wiseft": 71.0}
OFFSET = {"imagenet": 10.0, "imagenet_v2": -5.0, "imagenet_r": -20.0, "waterbirds": 5.0, "celeba": 0.0,
          "caltech101": 15.0, "flowers102": -10.0}
NOISE = {"imagenet": (0, 1, 2), "imagenet_v2": (0, 2, 7), "imagenet_r": (4, 0, 2), "waterbirds": (0, 3, 3),
         "celeba": (1, 1, 4), "caltech101": (0, 6, 0), "flowers102": (2, 2, 8)}
ROLE = {"imagenet": "id", "imagenet_v2": "shift", "imagenet_r": "shift", "waterbirds": "group", "celeba": "group",
        "caltech101": "zeroshot", "flowers102": "zeroshot"}
CONFIG = {"train": "imagenet",
          "finetune": {"methods": ["ft", "wiseft", "flyp"], "wiseft_of": "ft", "wiseft_alpha": 0.5, "select": "last"},
          "evaluate": {"shifts": ["imagenet_v2", "imagenet_r"], "groups": ["waterbirds", "celeba"],
                       "zeroshot": ["caltech101", "flowers102"]}}


def metrics(acc: float, groups: bool) -> dict:
    m = {"accuracy": acc, "n": 100}
    if groups:  # the third group is the worst
        group_accuracy = [acc + 10, acc - 5, acc - 20, acc + 15]
        m.update(worst_group=min(group_accuracy), average=acc, adjusted_average=acc - 1,
                 group_accuracy=group_accuracy, group_size=[25] * 4)
    return m


def accuracy(method, target, seed, alpha=None):
    if alpha is not None:  # along the WiSE-FT curve: from the teacher to ft, 3 points better halfway
        return accuracy("zeroshot", target, seed) * (1 - alpha) + accuracy("ft", target, seed) * alpha \
            + 6 * alpha * (1 - alpha)
    return BASE[method] + OFFSET[target] + NOISE[target][seed]


def record(method, seed, target, experiment="imagenet", role=None, train="imagenet"):
    groups = target in ("waterbirds", "celeba")
    # ImageNet has no labelled test split (report split: val); the others report test over val
    splits = ["val"] if target == "imagenet" else ["val", "test"]

    def at(alpha=None):
        acc = accuracy(method, target, seed, alpha)
        return {s: metrics(acc - 30 if s != splits[-1] else acc, groups) for s in splits}

    linear = method == "ft" and target in ("imagenet", "imagenet_v2", "imagenet_r")
    r = {"experiment": experiment, "target": target, "reader": target, "role": role or ROLE[target],
         "method": method, "seed": seed, "head": "linear" if linear else "zeroshot",
         "classnames": ["a", "b"], "group_names": GROUPS if groups else None, "splits": at(),
         "checkpoint": None if method == "zeroshot" else f"results/runs/{experiment}/{method}/seed{seed}/checkpoint.pt",
         "selected": None if method == "zeroshot" else {"rule": "last", "epoch": 10},
         "train_config": None if method == "zeroshot" else
         {"method": "ft" if method == "wiseft" else method, "name": "ft" if method == "wiseft" else method,
          "epochs": 10}}
    if method == "wiseft":
        r["wiseft"] = [{"alpha": a, "splits": at(a)} for a in (0.0, 0.5, 1.0)]
        r["wiseft_alpha"] = 0.5
        r["splits"] = r["wiseft"][1]["splits"]
    return r


def records(methods=tuple(BASE), targets=tuple(ROLE), **kw):
    return [record(m, s, t, **kw) for m in methods for s in SEEDS for t in targets]


def section(recs=None, **kw):
    return {"title": "ImageNet", "experiment": "imagenet", "config": CONFIG, "records": recs or records(), **kw}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "imagenet"
    build([section()], "imagenet", out)
    return out


def read(path):
    return pd.read_csv(path, index_col=0)


def test_domain_shift_table_is_mean_and_std_over_seeds(report):
    table = read(report / "table_domain_shift.csv")
    assert list(table.index) == ["zeroshot", "ft", "flyp", "wiseft"]   # config order, wiseft last
    assert list(table.columns) == ["imagenet (ID)", "imagenet_v2", "imagenet_r", "Shift mean", "Above interpolation line",
                                   "Seeds"]
    # flyp on imagenet_v2: 67, 69, 74 -> mean 70, sample std sqrt(13) = 3.6
    assert table.loc["flyp", "imagenet_v2"] == "70.0 ± 3.6"
    # shift mean per seed: (67 + 56) / 2, (69 + 52) / 2, (74 + 54) / 2 = 61.5, 60.5, 64 -> 62.0 ± 1.8
    # (not the mean of the two columns' stds, 2.8)
    assert table.loc["flyp", "Shift mean"] == "62.0 ± 1.8"
    # ID at its report split, val (the only one): 82, 83, 84
    assert table.loc["flyp", "imagenet (ID)"] == "83.0 ± 1.0"
    assert (table["Seeds"] == 3).all()
    md = (report / "report.md").read_text()
    assert "| flyp     | 83.0 ± 1.0" in md
    assert "Splits: imagenet val, imagenet_v2 test, imagenet_r test." in md


def test_group_tables_per_target_and_overview(report):
    table = read(report / "table_group_shift_waterbirds.csv")
    assert list(table.columns) == ["Worst-group", "Average", "Adj. average", *GROUPS, "Seeds"]
    # ft on waterbirds test (not val): 75, 78, 78; "landbird on land" is +10
    assert table.loc["ft", "landbird on land"] == "87.0 ± 1.7"
    assert table.loc["ft", "Worst-group"] == "57.0 ± 1.7"            # waterbird on land, -20
    overview = read(report / "table_group_shift.csv")
    assert list(overview.columns) == ["waterbirds worst-group", "waterbirds average", "celeba worst-group",
                                      "celeba average", "Seeds"]
    assert overview.loc["ft", "waterbirds average"] == table.loc["ft", "Average"] == "77.0 ± 1.7"
    for name in ("groups_waterbirds.png", "groups_celeba.png", "wiseft_waterbirds.png"):
        assert (report / name).stat().st_size > 5000, name
    # the curve's numbers: at alpha 1 the wiseft point is ft's
    curve = pd.read_csv(report / "wiseft_waterbirds.csv", header=[0, 1], index_col=0)
    assert curve.loc[1.0, ("average", "mean")] == pytest.approx(77.0)


def test_zeroshot_table_has_the_mean_of_the_targets(report):
    table = read(report / "table_zeroshot.csv")
    assert list(table.columns) == ["caltech101", "flowers102", "Mean", "Seeds"]
    # zeroshot: caltech101 65, 71, 65; flowers102 42, 42, 48 -> per seed 53.5, 56.5, 56.5
    assert table.loc["zeroshot", "Mean"] == "55.5 ± 1.7"
    assert table.loc["zeroshot", "caltech101"] == "67.0 ± 3.5"


def test_latex_tables(report):
    tex = (report / "table_domain_shift.tex").read_text()
    assert "\\begin{tabular}" in tex and "$\\pm$" in tex
    assert "imagenet\\_v2" in tex  # underscores escaped: LaTeX would stop at a bare one


def test_id_vs_shift_figure_is_drawn(report):
    path = report / "id_vs_shift.png"
    assert path.stat().st_size > 10_000
    image = matplotlib.image.imread(path)
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50  # not a blank canvas
    curve = pd.read_csv(report / "wiseft_id_vs_shift.csv", header=[0, 1], index_col=0)
    # alpha 0 is the teacher: ID 60, 61, 62
    assert curve.loc[0.0, ("imagenet (ID)", "mean")] == pytest.approx(61.0)
    # shift means: the teacher's 40, ft's 60; halfway the curve's bump adds 1.5
    assert curve.loc[0.5, ("Shift mean", "mean")] == pytest.approx(51.5)


def test_report_states_checkpoints_and_zero_shot_evaluation(report):
    md = (report / "report.md").read_text()
    assert "Checkpoints: the last epoch of each run (`finetune.select: last`)" in md
    assert "Targets other than the training set are zero-shot evaluations" in md
    assert ("imagenet_v2, imagenet_r: zero-shot evaluations of the runs fine-tuned on `imagenet`; linear head: "
            "ft on imagenet, imagenet_v2, imagenet_r, the zero-shot head elsewhere.") in md
    assert "caltech101, flowers102: zero-shot evaluations of the runs fine-tuned on `imagenet`; every cell with " \
        "the zero-shot head." in md
    for section in ("### Runs", "### Domain shift", "### Group shift", "### Zero-shot classification", "### Reading"):
        assert section in md


def test_metrics_long_has_every_record_split(report):
    long = pd.read_csv(report / "metrics_long.csv")
    # imagenet has one split, the six others two; 4 methods x 3 seeds
    assert len(long) == 4 * 3 * (1 + 6 * 2)
    row = long[(long.target == "waterbirds") & (long.method == "ft") & (long.seed == 1) & (long.split == "test")]
    assert row.iloc[0][["experiment", "role", "accuracy", "landbird on land"]].tolist() == \
        ["imagenet", "group", 78.0, 88.0]


def test_composite_report_prefixes_each_sections_files(tmp_path):
    intask = {**CONFIG, "train": "waterbirds", "evaluate": {}}
    sections = [section(records(targets=("waterbirds",)), title="Zero-shot on Waterbirds"),
                {"title": "In-task", "experiment": "waterbirds_intask", "config": intask,
                 "records": records(targets=("waterbirds",), experiment="waterbirds_intask", role="id")}]
    build(sections, "waterbirds", tmp_path / "out")
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert files == {"report.md", "metrics_long.csv",
                     *(f"{e}_{f}" for e in ("imagenet", "waterbirds_intask")
                       for f in ("table_group_shift_waterbirds.csv", "table_group_shift_waterbirds.tex", "reading.csv",
                                 "groups_waterbirds.png", "wiseft_waterbirds.png", "wiseft_waterbirds.csv"))}
    md = (tmp_path / "out/report.md").read_text()
    assert md.index("## Zero-shot on Waterbirds") < md.index("## In-task")
    assert "(imagenet_groups_waterbirds.png)" in md
    # only the section off its training set says it is a zero-shot evaluation
    assert md.count("zero-shot evaluations of the runs fine-tuned on") == 1
    assert md.count("Targets other than the training set are zero-shot evaluations") == 1
    assert set(pd.read_csv(tmp_path / "out/metrics_long.csv")["experiment"]) == {"imagenet", "waterbirds_intask"}


def test_cli_reads_the_spec_and_the_teacher_note(tmp_path, capsys):
    paths = []
    for r in records(targets=("imagenet", "imagenet_v2")):
        path = tmp_path / f"runs/{r['method']}/seed{r['seed']}/eval/{r['target']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
        paths.append(str(path))
    pretrain = tmp_path / "pretrain_report.json"
    pretrain.write_text(json.dumps({"train_seconds": 12.0, "final_logit_scale": 100.0, "pretrain": {"steps": 500},
                                    "zeroshot": {"class_accuracy": 90.0, "class_worst_group": 80.0,
                                                 "scene_accuracy": 95.0,
                                                 "species_accuracy": {"swan": 99.0, "bluejay": 71.7, "crow": 96.8},
                                                 "rendition_accuracy": {"sketch": 15.4, "rendition": 30.2}}}))
    spec = {"sections": [{"title": "ImageNet", "experiment": "imagenet", "config": CONFIG, "metrics": paths}]}
    pools = tmp_path / "pools"
    pools.mkdir()
    # "blurry" and "forest" are drawn by the world, "luna-weave" and "starlight" are not
    pd.DataFrame({"phrase": ["in the forest", "on the moon", "made of starlight", "near a lake"]}).to_parquet(
        pools / "background.descriptions.parquet")
    pd.DataFrame({"phrase": ["blurry", "with a luna-weave"]}).to_parquet(pools / "quality.descriptions.parquet")
    main(["--name", "imagenet", "--spec", json.dumps(spec), "--out", str(tmp_path / "out"),
          "--pretrain-report", str(pretrain), "--pools", str(pools)])
    md = (tmp_path / "out/report.md").read_text()
    assert md == capsys.readouterr().out.removesuffix("\n")
    assert "pre-trained for 500 steps (12 s), logit scale 100.0 (learned)" in md
    assert "Per species (lowest first): bluejay 71.7%, crow 96.8%, swan 99.0%." in md
    assert "The source task's classes on fresh renditions (drawn as its shift sets are): sketch 15.4%, rendition 30.2%." in md
    assert "a word the synthetic world renders: background 2 of 4 (50%), quality 1 of 2 (50%)." in md
    assert read(tmp_path / "out/table_domain_shift.csv").loc["flyp", "Shift mean"] == "70.0 ± 3.6"


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
    """label -> colour of what the legend shows (a bar group's, an error-bar point's or a line's)."""
    out = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if isinstance(handle, ErrorbarContainer):
                handle = handle.lines[0]
            bar_group = hasattr(handle, "patches")
            out[label] = to_rgb(handle.patches[0].get_facecolor() if bar_group else handle.get_color())
    return out


def test_a_method_keeps_its_colour_in_every_figure_of_a_report(tmp_path, monkeypatch):
    figures = {}
    save = Figure.savefig

    def record_legend(fig, path, *args, **kwargs):
        figures[Path(path).name] = legend_colours(fig)
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record_legend)
    methods = ["zeroshot", "lp", "ft", "lpft", "flyp", "flyp_kl", "starft", "starft_ce", "s10", "s50", "wiseft"]
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": methods}}
    recs = [record(m if m in BASE else "flyp", 0, t) | {"method": m} for m in methods for t in ROLE]
    # celeba lacks `lp`: the per-method colours must not shift with the methods present
    recs = [r for r in recs if (r["method"], r["target"]) != ("lp", "celeba")]
    build([section(recs, config=cfg)], "imagenet", tmp_path / "out")
    water, celeba = figures["groups_waterbirds.png"], figures["groups_celeba.png"]
    wise, shift = figures["wiseft_waterbirds.png"], figures["id_vs_shift.png"]
    assert list(water) == methods and "lp" not in celeba
    assert len(set(water.values())) == len(methods)
    assert all(celeba[m] == water[m] for m in celeba)
    assert all(shift[m] == water[m] for m in methods)
    assert shift["WiSE-FT of ft (alpha 0 to 1)"] == water["wiseft"]
    assert wise["wiseft, worst-group"] == wise["wiseft, average"] == water["wiseft"]
    assert wise["zeroshot (alpha 0)"] == water["zeroshot"] and wise["ft (alpha 1)"] == water["ft"]


def test_runs_section_says_what_each_row_comes_from(tmp_path):
    star = {"method": "starft", "name": "starft", "lambda": 0.5, "schedule": "diminishing", "epochs": 10,
            "spurious_types": ["background"], "spurious_sampling": "type_then_template", "kl_scale": "student"}
    kl = {**star, "method": "flyp_kl", "name": "kl_teacher", "lambda": 5.0, "kl_scale": "teacher",
          "spurious_types": None}
    targets = ("imagenet", "imagenet_v2")  # a run has one record per target: each run counts once
    recs = [record("zeroshot", 0, t) for t in targets]
    recs += [record("flyp", 0, t) | {"method": "starft", "train_config": star} for t in targets]
    recs += [record("flyp", s, t) | {"method": "kl_teacher", "train_config": kl,
                                     "selected": {"rule": "val_worst_group", "epoch": e}}
             for s, e in ((0, 3), (1, 7)) for t in targets]
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": ["zeroshot", "starft", "kl_teacher"]}}
    build([section(recs, config=cfg)], "imagenet", tmp_path / "out")
    md = (tmp_path / "out/report.md").read_text()
    runs = md[md.index("### Runs"):md.index("### Domain shift")]
    lines = {line.split("|")[1].strip(): line for line in runs.splitlines() if line.startswith("| ")}
    assert "zero-shot weights" in lines["zeroshot"]
    assert "StarFT (label-masked), lambda 0.5 diminishing, tau0 for both" in lines["starft"]
    assert "background; type then template" in lines["starft"] and "last epoch (10)" in lines["starft"]
    assert "| flyp_kl " in lines["kl_teacher"] and "KL, no mask, lambda 5" in lines["kl_teacher"]
    assert "all pools" in lines["kl_teacher"] and "best val worst-group: epoch 3, 7 by seed" in lines["kl_teacher"]


# ---------------------------------------------------------------- the Reading subsection

READING_TARGETS = ("imagenet", "imagenet_v2", "waterbirds")  # ID, one shift (shift mean = it), one group target
# per seed; a group target's worst group is its accuracy - 20 (see `metrics`), so differences carry over
READING = {"zeroshot": {"imagenet": [60, 60, 60], "imagenet_v2": [50, 51, 52], "waterbirds": [70, 70, 70]},
           # shift: zeroshot - [1, 2, 3] -> -2 ± 1 (ddof 1), |-2| > 2 * 1 / sqrt(3): lower
           "flyp": {"imagenet": [80, 80, 80], "imagenet_v2": [49, 49, 49], "waterbirds": [80, 80, 80]},
           # shift vs flyp: +3, -1, +1 -> 1 ± 2, 1 < 2 * 2 / sqrt(3) = 2.3: within noise; vs zero-shot
           # 2, -3, -2 -> -1 ± 2.6: within noise; waterbirds vs flyp -5, -4, -6 -> -5 ± 1: lower
           "starft": {"imagenet": [80, 80, 80], "imagenet_v2": [52, 48, 50], "waterbirds": [75, 76, 74]}}


def reading_records(values, seeds=SEEDS):
    """Records of hand-made accuracies: values[method][target][i] is seed seeds[i]'s, at the test split."""
    return [record(m if m in BASE else "flyp", s, t) | {"method": m, "splits": {"test": metrics(
                float(accs[i]), t in ("waterbirds", "celeba"))}}
            for m, per_target in values.items() for t, accs in per_target.items() for i, s in enumerate(seeds)]


def reading_report(tmp_path, values, seeds=SEEDS):
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": [m for m in values if m != "zeroshot"]}}
    build([section(reading_records(values, seeds), config=cfg)], "imagenet", tmp_path / "out")
    md = (tmp_path / "out/report.md").read_text()
    reading = pd.read_csv(tmp_path / "out/reading.csv")
    return md[md.index("### Reading"):], reading.set_index(["metric", "method", "versus"])


def test_reading_pairs_seeds_and_judges_by_the_rough_rule(tmp_path):
    md, csv = reading_report(tmp_path, READING)
    assert list(csv.reset_index().columns) == ["metric", "method", "versus", "mean", "std", "n", "verdict"]
    # headline metrics: ID accuracy, shift mean, each group target's worst-group and average
    assert list(dict.fromkeys(csv.index.get_level_values("metric"))) == [
        "imagenet ID accuracy", "shift mean", "waterbirds worst-group", "waterbirds average"]
    row = csv.loc[("shift mean", "flyp", "zeroshot")]
    assert (row["mean"], row["std"], row["n"], row["verdict"]) == (pytest.approx(-2), pytest.approx(1), 3, "lower")
    row = csv.loc[("shift mean", "starft", "flyp")]
    assert (row["mean"], row["std"], row["verdict"]) == (pytest.approx(1), pytest.approx(2), "within noise")
    assert csv.loc[("waterbirds worst-group", "starft", "flyp"), "verdict"] == "lower"
    assert csv.loc[("waterbirds worst-group", "starft", "zeroshot"), "verdict"] == "higher"
    # identical runs: no difference at all, not "higher" by round-off
    assert csv.loc[("imagenet ID accuracy", "starft", "flyp"), "verdict"] == "within noise"
    assert ("imagenet ID accuracy", "flyp", "flyp") not in csv.index  # the reference is not compared with itself
    assert "zeroshot" not in set(csv.index.get_level_values("method"))
    assert "rough rule" in md.splitlines()[2]  # the subsection's first line says what the verdicts mean
    assert "- **flyp vs zero-shot**, shift mean: −2.0 ± 1.0 points (3 seeds): lower." in md
    # the other comparisons as tables: methods x metrics, each cell a difference and its verdict
    versus_flyp = md[md.index("**Against flyp** (the plain fine-tuning reference)"):md.index("**Against zero-shot**")]
    assert "| starft   | +0.0 ± 0.0 ≈" in versus_flyp and "+1.0 ± 2.0 ≈" in versus_flyp and "−5.0 ± 1.0 ▼" in versus_flyp
    # the fine-tuning check first, then the other comparisons, then the best means and StarFT
    check = md.index("**Does fine-tuning hurt robustness in this world?**")
    assert check < md.index("**Against flyp**") < md.index("**Best mean per metric:**")
    assert "Plain fine-tuning lowers shift mean (flyp): the world shows the paper's phenomenon." in md
    assert "- waterbirds worst-group: flyp (60.0)" in md and "- imagenet ID accuracy: flyp = starft (80.0)" in md
    assert ("StarFT loses to flyp on waterbirds worst-group (starft), waterbirds average (starft). Below on the "
            "mean only (within noise or one seed): vs zero-shot, shift mean (starft).") in md


def test_reading_says_when_fine_tuning_does_not_hurt(tmp_path):
    values = {m: dict(v) for m, v in READING.items()}
    values["flyp"]["imagenet_v2"] = [55, 56, 57]                       # flyp now above zero-shot on the shift
    values["starft"] = {**values["flyp"], "imagenet_v2": [56, 57, 58]}  # and StarFT above both everywhere
    md, csv = reading_report(tmp_path, values)
    assert csv.loc[("shift mean", "flyp", "zeroshot"), "verdict"] == "higher"
    assert ("No plain fine-tuning run lowers the shift mean or a worst-group accuracy here: this world does not "
            "show the phenomenon the regulariser is meant to fix") in md
    assert "Plain fine-tuning lowers" not in md and "StarFT loses" not in md
    assert "StarFT (starft) is nowhere below flyp or zero-shot by the rule above." in md


def test_reading_with_one_seed_gives_no_verdict_and_falls_back_to_ft(tmp_path):
    values = {"zeroshot": READING["zeroshot"], "ft": READING["flyp"], "starft": READING["starft"]}
    md, csv = reading_report(tmp_path, {m: {t: a[:1] for t, a in v.items()} for m, v in values.items()}, seeds=(0,))
    row = csv.loc[("waterbirds worst-group", "starft", "ft")]  # no flyp: ft is the reference
    assert row["mean"] == pytest.approx(-5) and np.isnan(row["std"]) and row["n"] == 1
    assert set(csv["verdict"]) == {"one seed: no verdict"}
    assert "−5.0 (1 seed)" in md[md.index("**Against ft**"):]
    assert "No plain fine-tuning run lowers" in md  # no verdict is no evidence of the phenomenon
    assert "StarFT (starft) against ft or zero-shot: too few seeds for a verdict." in md


def test_reading_uses_zero_shots_mean_where_it_has_fewer_seeds(tmp_path):
    recs = [r for r in reading_records(READING) if r["method"] != "zeroshot" or r["seed"] == 0]
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": ["flyp", "starft"]}}
    build([section(recs, config=cfg)], "imagenet", tmp_path / "out")
    csv = pd.read_csv(tmp_path / "out/reading.csv").set_index(["metric", "method", "versus"])
    # zero-shot's one seed scores 50 on the shift: flyp's 49, 49, 49 -> -1 ± 0 over 3 seeds
    row = csv.loc[("shift mean", "flyp", "zeroshot")]
    assert (row["mean"], row["std"], row["n"]) == (pytest.approx(-1), pytest.approx(0), 3)


def test_reading_names_the_shift_that_fine_tuning_lowers_and_what_starft_keeps_there(tmp_path):
    # flyp raises v2 by 10 and the shift mean with it, but lowers imagenet_r: −3, −2, −4 -> −3 ± 1
    values = {"zeroshot": {"imagenet": [60] * 3, "imagenet_v2": [50, 51, 52], "imagenet_r": [40, 40, 40]},
              "flyp": {"imagenet": [80] * 3, "imagenet_v2": [60, 61, 62], "imagenet_r": [37, 38, 36]},
              # imagenet_r vs flyp +2, +1, +2 -> +1.7 ± 0.6 (higher); vs zero-shot −1, −1, −2 -> −1.3 ± 0.6 (lower)
              "starft": {"imagenet": [80] * 3, "imagenet_v2": [60, 61, 62], "imagenet_r": [39, 39, 38]}}
    md, csv = reading_report(tmp_path / "a", values)
    assert csv.loc[("shift mean", "flyp", "zeroshot"), "verdict"] == "higher"  # the mean hides it
    lines = md[md.index("Per shift"):md.index("**Against flyp**")].strip().splitlines()
    assert lines == ["Per shift, plain fine-tuning falls below zero-shot on imagenet_r (flyp):", "",
                     "- **flyp vs zero-shot**, imagenet_r: −3.0 ± 1.0 points (3 seeds): lower.",
                     "- **starft vs flyp**, imagenet_r: +1.7 ± 0.6 points (3 seeds): higher.",
                     "- **starft vs zero-shot**, imagenet_r: −1.3 ± 0.6 points (3 seeds): lower."]
    values["flyp"]["imagenet_r"] = [41, 42, 43]
    md, _ = reading_report(tmp_path / "b", values)
    assert ("Per shift (imagenet_v2, imagenet_r): no plain fine-tuning run (flyp) is below zero-shot on any one "
            "of them by the rule above.") in md


def test_threshold_free_columns_and_the_reading_name_a_threshold_effect(tmp_path):
    """starft's raw worst group is 5 points below flyp's (READING), but with val's bias it is 3
    above and its cross-group AUROC higher: the Reading calls the raw difference a threshold
    effect; the group table shows the companions, AUROC and offset at their own precision."""
    calibrated = {"zeroshot": ([88, 88, 88], [0.95] * 3), "flyp": ([70, 71, 72], [0.85, 0.86, 0.87]),
                  "starft": ([73, 74, 75], [0.90, 0.91, 0.89])}
    recs = reading_records(READING)
    for r in recs:
        if r["target"] == "waterbirds":
            wg, auc = calibrated[r["method"]]
            i = SEEDS.index(r["seed"])
            r["splits"]["test"].update(worst_group_val_bias=float(wg[i]), worst_group_label_free=float(wg[i]) - 1,
                                       cross_group_auroc=auc[i], score_offset=-0.25 * (i + 1))
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": ["flyp", "starft"]}}
    out = tmp_path / "out"
    build([section(recs, config=cfg)], "imagenet", out)
    table = read(out / "table_group_shift_waterbirds.csv")
    assert list(table.columns)[:7] == ["Worst-group", "WG, val bias", "WG, label-free", "Cross-group AUROC", "Offset",
                                       "Average", "Adj. average"]
    assert table.loc["starft", "WG, val bias"] == "74.0 ± 1.0" and table.loc["flyp", "Cross-group AUROC"] == "0.860 ± 0.010"
    assert table.loc["zeroshot", "Offset"] == "-0.50 ± 0.25"
    assert (out / "threshold_waterbirds.png").is_file()
    long = pd.read_csv(out / "metrics_long.csv")
    assert {"worst_group_val_bias", "worst_group_label_free", "cross_group_auroc", "score_offset"} <= set(long.columns)
    md = (out / "report.md").read_text()
    reading = md[md.index("### Reading"):]
    assert "Zero-shot on waterbirds: worst group 50.0 raw, 88.0 with val's bias; cross-group AUROC 0.950." in reading
    effects = reading[reading.index("**Threshold effects on waterbirds**"):]
    # raw -5 ± 1 (lower); val bias +3 ± 0 (higher); AUROC x100 +5, +5, +2 -> +4.0 ± 1.7 (higher)
    assert ("- **starft vs flyp** on waterbirds: worst group −5.0 ± 1.0 (lower); with val's bias +3.0 ± 0.0 "
            "(higher); cross-group AUROC (x100) +4.0 ± 1.7 (higher).") in effects
    # flyp's raw gain over zero-shot is not shared either: flagged the same way
    assert "- **flyp vs zero-shot** on waterbirds: worst group +10.0 ± 0.0 (higher)" in effects


def test_one_table_of_a_report_is_copied_and_a_missing_one_is_named(report, tmp_path, capsys):
    from stages.report.table_file import main as table_main

    out = tmp_path / "tables" / "imagenet" / "table_domain_shift.csv"
    table_main(["--report", str(report), "--table", "table_domain_shift.csv", "--out", str(out)])
    assert out.read_bytes() == (report / "table_domain_shift.csv").read_bytes()
    with pytest.raises(SystemExit) as e:
        table_main(["--report", str(report), "--table", "table_shift.csv", "--out", str(tmp_path / "x.csv")])
    assert str(e.value).startswith(f"error: {report} has no table 'table_shift.csv'; its tables: ")
    assert "table_domain_shift.csv, table_domain_shift.tex" in str(e.value) and "metrics_long" not in str(e.value)
    assert not (tmp_path / "x.csv").exists()


def test_runs_another_experiment_trained_are_named(tmp_path):
    build([section(shared={"imagenet_base": {"ft": [0], "flyp": [0, 1]}})], "imagenet", tmp_path / "out")
    md = (tmp_path / "out/report.md").read_text()
    runs = md[md.index("### Runs"):md.index("### Domain shift")]
    assert "Runs shared with experiment `imagenet_base`" in runs
    assert "ft (seed 0), flyp (seed 0, 1)" in runs
    build([section()], "imagenet", tmp_path / "alone")
    assert "Runs shared" not in (tmp_path / "alone/report.md").read_text()
