"""Effective robustness in the report: the logit transform, the gain over the WiSE-FT curve and
the ID-vs-shift figure on logit axes."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from stages.report.cli import build
from stages.report.robustness import (ABOVE_LINE, LOGIT_EPS, curve_at, expit_percent, interpolation_gain, logit)
from stages.report.tables import SHIFT_MEAN
from tests.test_report import CONFIG, metrics, record, section


def test_logit_is_the_stated_one():
    # logit(a) = ln(p / (1 - p)), p = a / 100: 75% -> ln 3, 50% -> 0, 10% -> -ln 9
    assert logit(75.0) == pytest.approx(math.log(3), abs=1e-12)
    assert logit(50.0) == pytest.approx(0.0, abs=1e-12)
    assert logit([10.0, 90.0]) == pytest.approx([-math.log(9), math.log(9)], abs=1e-12)
    assert expit_percent(logit([3.0, 41.5, 99.0])) == pytest.approx([3.0, 41.5, 99.0], rel=1e-12)
    # 0 and 100% are clipped, not infinite
    assert logit([0.0, 100.0]) == pytest.approx([math.log(LOGIT_EPS / (1 - LOGIT_EPS)),
                                                  math.log((1 - LOGIT_EPS) / LOGIT_EPS)])


# a curve in alpha order with unequal ID steps (10 then 15 points)
CURVE_ID, CURVE_SHIFT = np.array([60.0, 70.0, 85.0]), np.array([40.0, 48.0, 50.0])


def test_curve_is_joined_linearly_on_logit_axes():
    # at ID 65, on the segment (60, 40)-(70, 48), by hand:
    #   t = (logit .65 - logit .60) / (logit .70 - logit .60) = (0.619039 - 0.405465) / (0.847298 - 0.405465)
    #     = 0.483382
    #   logit y = logit .40 + t (logit .48 - logit .40) = -0.405465 + 0.483382 * 0.325422 = -0.248162
    #   y = 100 / (1 + e^0.248162) = 43.82760
    # (linear axes would give 44.0: the tolerance tells the two apart)
    assert curve_at(CURVE_ID, CURVE_SHIFT, 65.0) == pytest.approx(43.82760, abs=1e-4)
    # on the wider second segment, at ID 80: t = (1.386294 - 0.847298) / (1.734601 - 0.847298) = 0.607456,
    # logit y = -0.080043 + 0.607456 * 0.080043 = -0.031420 -> y = 49.21456 (linear: 49.33)
    assert curve_at(CURVE_ID, CURVE_SHIFT, 80.0) == pytest.approx(49.21456, abs=1e-4)
    # the curve's own points, its ends included, are on it
    assert curve_at(CURVE_ID, CURVE_SHIFT, 60.0) == pytest.approx(40.0, abs=1e-9)
    assert curve_at(CURVE_ID, CURVE_SHIFT, 85.0) == pytest.approx(50.0, abs=1e-9)
    # outside the curve's ID range: undefined, not extrapolated
    assert np.isnan(curve_at(CURVE_ID, CURVE_SHIFT, 59.9)) and np.isnan(curve_at(CURVE_ID, CURVE_SHIFT, 85.1))


def test_a_curve_passing_an_id_accuracy_twice_counts_its_higher_shift():
    # ID rises from 70 to 80 and falls back to 72: ID 75 is passed on both segments, the higher of
    # the two shift accuracies there is the line, whichever segment comes first
    high = curve_at([70.0, 80.0], [46.0, 50.0], 75.0)
    low = curve_at([80.0, 72.0], [50.0, 40.0], 75.0)
    assert low < high
    assert curve_at([70.0, 80.0, 72.0], [46.0, 50.0, 40.0], 75.0) == pytest.approx(high, abs=1e-12)
    assert curve_at([72.0, 80.0, 70.0], [40.0, 50.0, 46.0], 75.0) == pytest.approx(high, abs=1e-12)
    # the ID range of such a curve is its min to max: 81 is outside
    assert np.isnan(curve_at([70.0, 80.0, 72.0], [46.0, 50.0, 40.0], 81.0))


def points(rows):
    """A wide frame of (method, seed) -> ID, shift mean."""
    index = pd.MultiIndex.from_tuples([(m, s) for m, s, _, _ in rows], names=["method", "seed"])
    return pd.DataFrame({"src (ID)": [i for _, _, i, _ in rows], SHIFT_MEAN: [y for _, _, _, y in rows]}, index=index)


def curve_frame(curves):
    """seed -> (ids, shifts), alphas 0, 0.3, 1 (unequal), as accuracy_wide(..., by="alpha") gives it."""
    rows = [(a, s, i, y) for s, (ids, ys) in curves.items() for a, i, y in zip((0.0, 0.3, 1.0), ids, ys)]
    index = pd.MultiIndex.from_tuples([(a, s) for a, s, _, _ in rows], names=["alpha", "seed"])
    return pd.DataFrame({"src (ID)": [i for *_, i, _ in rows], SHIFT_MEAN: [y for *_, y in rows]}, index=index)


def test_gain_is_per_seed_against_the_same_seeds_curve_and_signed():
    # seed 1's curve is seed 0's lifted by 2 points of shift accuracy
    curves = {0: (CURVE_ID, CURVE_SHIFT), 1: (CURVE_ID, CURVE_SHIFT + 2)}
    gains = interpolation_gain(points([("above", 0, 65.0, 45.0), ("above", 1, 65.0, 47.0),
                                       ("below", 0, 80.0, 48.0), ("outside", 0, 90.0, 60.0),
                                       ("unpaired", 7, 60.0, 42.0)]), curve_frame(curves), "src (ID)")
    # 45 - 43.82760 (seed 0's curve); 47 - seed 1's curve at 65 (its own hand value below)
    seed1 = 100 / (1 + math.exp(-(math.log(42 / 58) + 0.4833822 * (math.log(50 / 50) - math.log(42 / 58)))))
    assert gains[("above", 0)] == pytest.approx(45.0 - 43.82760, abs=1e-4) and gains[("above", 0)] > 0
    assert gains[("above", 1)] == pytest.approx(47.0 - seed1, abs=1e-4)
    assert gains[("below", 0)] == pytest.approx(48.0 - 49.21456, abs=1e-4) and gains[("below", 0)] < 0
    assert np.isnan(gains[("outside", 0)])
    # a seed the curve lacks is compared with the mean curve (shift 41 at ID 60)
    assert gains[("unpaired", 7)] == pytest.approx(1.0, abs=1e-9)


def curve_records(method, seed, targets, acc, curve=None):
    """Records with hand-made accuracies at the test split: acc[target]; curve: [(alpha, {target: acc})]."""
    recs = []
    for t in targets:
        r = record("flyp" if method != "zeroshot" else "zeroshot", seed, t) | {"method": method,
                                                                               "splits": {"test": metrics(acc[t], False)}}
        if curve is not None:
            r["wiseft"] = [{"alpha": a, "splits": {"test": metrics(c[t], False)}} for a, c in curve]
            r["wiseft_alpha"] = 0.3
        recs.append(r)
    return recs


TARGETS = ("imagenet", "imagenet_v2", "imagenet_r")


def test_report_column_above_the_interpolation_line(tmp_path):
    # the curve (seed 0 and 1 alike): ID 60, 70, 85; shift mean 40, 48, 50 (v2 and r each the mean +- 5)
    curve = [(a, {"imagenet": i, "imagenet_v2": y + 5, "imagenet_r": y - 5})
             for a, i, y in zip((0.0, 0.3, 1.0), CURVE_ID, CURVE_SHIFT)]
    recs = []
    for seed, shift in ((0, 45.0), (1, 46.0)):   # ID 65: gains 1.17240 and 2.17240 -> +1.7 ± 0.7
        recs += curve_records("starft", seed, TARGETS, {"imagenet": 65.0, "imagenet_v2": shift + 1,
                                                        "imagenet_r": shift - 1})
    for seed in (0, 1):   # ID 90 for seed 0 (outside), 80 for seed 1: 48 - 49.21456 = -1.2
        recs += curve_records("ft", seed, TARGETS, {"imagenet": 90.0 - 10 * seed, "imagenet_v2": 48.0,
                                                    "imagenet_r": 48.0})
    for seed in (0, 1):   # ID 95: outside for both seeds
        recs += curve_records("flyp", seed, TARGETS, {"imagenet": 95.0, "imagenet_v2": 60.0, "imagenet_r": 60.0})
    for seed in (0, 1):
        recs += curve_records("wiseft", seed, TARGETS, curve[1][1], curve=curve)
    cfg = {**CONFIG, "evaluate": {"shifts": ["imagenet_v2", "imagenet_r"]},
           "finetune": {**CONFIG["finetune"], "methods": ["ft", "flyp", "starft"], "wiseft_of": "ft"}}
    build([section(recs, config=cfg)], "imagenet", tmp_path / "out")
    table = pd.read_csv(tmp_path / "out/table_domain_shift.csv", index_col=0)
    assert table.columns[-2] == ABOVE_LINE
    assert table.loc["starft", ABOVE_LINE] == "+1.7 ± 0.7"
    assert table.loc["ft", ABOVE_LINE] == "-1.2 (1 of 2 seeds)"
    assert pd.isna(table.loc["flyp", ABOVE_LINE])            # blank: outside for every seed
    assert table.loc["wiseft", ABOVE_LINE] == "+0.0 ± 0.0"   # a point of the curve is on it
    md = (tmp_path / "out/report.md").read_text()
    assert "Blank in *Above interpolation line*: the method's ID accuracy lies outside the ID range" in md
    assert "logit(a) = ln(p / (1 − p)) of the accuracy p = a / 100" in md


def test_no_column_without_a_curve(tmp_path):
    recs = [r for r in section()["records"] if r["method"] != "wiseft"]
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": ["ft", "flyp"]}}
    build([section(recs, config=cfg)], "imagenet", tmp_path / "out")
    assert ABOVE_LINE not in pd.read_csv(tmp_path / "out/table_domain_shift.csv", index_col=0).columns


def drawn(fig) -> dict:
    """What a saved figure shows: per axes its title (text, box), axes' transforms and tick labels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = {"width": fig.bbox.width, "height": fig.bbox.height, "axes": []}
    for ax in fig.axes:
        ticks = {}
        for i, axis in enumerate((ax.xaxis, ax.yaxis)):
            lo, hi = sorted(axis.get_view_interval())
            ticks[i] = [t.get_text() for t in axis.get_ticklabels() if lo <= t.get_position()[i] <= hi]
        out["axes"].append({"title": ax.title.get_text(), "box": ax.title.get_window_extent(renderer),
                            "positions": [axis.get_transform().transform(np.array([10.0, 50.0, 75.0]))
                                          for axis in (ax.xaxis, ax.yaxis)], "ticks": ticks})
    return out


def test_id_vs_shift_has_logit_axes_in_percent_and_its_whole_title(tmp_path, monkeypatch):
    figures = {}
    save = Figure.savefig

    def keep(fig, path, *args, **kwargs):
        result = save(fig, path, *args, **kwargs)
        figures[Path(path).name] = drawn(fig)
        return result

    monkeypatch.setattr(Figure, "savefig", keep)
    title = "Fine-tuned on the source task (ImageNet's stand-in), a title longer than the figure is wide"
    build([section(title=title)], "imagenet", tmp_path / "out")
    ax = figures["id_vs_shift.png"]["axes"][0]
    for i in (0, 1):
        # positions are logit(a) of the accuracy in percent (the stated transform), on both axes
        assert ax["positions"][i] == pytest.approx([-math.log(9), 0.0, math.log(3)], abs=1e-9)
        assert len(ax["ticks"][i]) >= 3 and all(0 < float(s) < 100 for s in ax["ticks"][i])   # accuracies in %
    # the title is drawn whole, every word of it (wrapped, not cut)
    assert " ".join(ax["title"].split()) == f"{title}: ID vs shift"
    # every figure of the report keeps its title within the canvas
    for name, fig in figures.items():
        for a in fig["axes"]:
            assert 0 <= a["box"].x0 and a["box"].x1 <= fig["width"] and a["box"].y1 <= fig["height"], name
