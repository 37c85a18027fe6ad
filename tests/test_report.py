import pandas as pd
import pytest

from stages.report import build

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
