"""The report's spuriosity-drift columns, figure and Reading sentence; the cross-section summary of
a transfer report; variant rows named by what they change."""

import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from stages.report import figures
from stages.report.cli import build
from stages.report.drift import format_drift
from tests.test_report import BASE, CONFIG, SEEDS, record, section

# hand-made drifts per (method, target): one value per seed at the report split (test); val gets
# other values, so that a table reading the wrong split shows it. imagenet_r has other class names
# (masked KL null): the domain-shift column falls back to the unmasked KL for all its shifts.
MASKED = {("flyp", "waterbirds"): [0.05, 0.06, 0.07], ("starft", "waterbirds"): [0.02, 0.02, 0.05],
          ("zeroshot", "waterbirds"): [0.0, 0.0, 0.0],
          ("flyp", "imagenet_v2"): [0.01, 0.01, 0.01], ("starft", "imagenet_v2"): [0.9, 0.9, 0.9]}
KL = {("flyp", "imagenet_v2"): [0.10, 0.12, 0.14], ("flyp", "imagenet_r"): [0.30, 0.34, 0.20],
      ("starft", "imagenet_v2"): [0.05, 0.05, 0.05], ("starft", "imagenet_r"): [0.15, 0.15, 0.15],
      ("flyp", "waterbirds"): [0.5, 0.5, 0.5], ("starft", "waterbirds"): [0.4, 0.4, 0.4],
      ("zeroshot", "waterbirds"): [0.0, 0.0, 0.0], ("flyp", "imagenet"): [0.2, 0.2, 0.2]}
TARGETS = ("imagenet", "imagenet_v2", "imagenet_r", "waterbirds")


def drift(method, target, i, split):
    if (method, target) not in KL:
        return None
    masked = MASKED.get((method, target))
    scale = 1.0 if split == "test" else 10.0
    return {"masked_kl": None if masked is None else masked[i] * scale, "kl": KL[(method, target)][i] * scale,
            "n_images": 100, "n_captions": 12, "pools": ["background"], "scale": "teacher"}


def drift_records(methods=("zeroshot", "ft", "flyp", "starft")):
    """`ft` is an older run: its records have no `spuriosity_drift`."""
    out = []
    for m in methods:
        for i, s in enumerate(SEEDS):
            for t in TARGETS:
                r = record(m if m in BASE else "flyp", s, t) | {"method": m}
                for split, met in r["splits"].items():
                    if (d := drift(m, t, i, split)) is not None:
                        met["spuriosity_drift"] = d
                out.append(r)
    return out


@pytest.fixture(scope="module")
def drift_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("drift") / "imagenet"
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": ["ft", "flyp", "starft"], "wiseft_of": "flyp"},
           "evaluate": {"shifts": ["imagenet_v2", "imagenet_r"], "groups": ["waterbirds"]}}
    build([section(drift_records(), config=cfg)], "imagenet", out)
    return out


def read(path):
    return pd.read_csv(path, index_col=0, keep_default_na=False)


def test_domain_shift_table_has_the_shift_mean_drift_unmasked_where_a_shift_lacks_the_masked(drift_report):
    table = read(drift_report / "table_domain_shift.csv")
    col = "Drift, shift mean (KL)"       # imagenet_r has no masked KL: the unmasked one for both shifts
    assert list(table.columns)[-2:] == [col, "Seeds"]
    # flyp per seed (0.10 + 0.30) / 2, (0.12 + 0.34) / 2, (0.14 + 0.20) / 2 = 0.2, 0.23, 0.17 -> 0.2 ± 0.03
    assert table.loc["flyp", col] == "0.200 ± 0.030"
    assert table.loc["starft", col] == "0.100 ± 0.000"
    assert table.loc["ft", col] == ""      # an older run without drift: blank, not an error
    assert table.loc["ft", "imagenet_v2"] != ""
    md = (drift_report / "report.md").read_text()
    assert "**Drift**: KL(teacher ‖ run)" in md and "(background)" in md and "teacher's logit scale" in md


def test_group_table_has_the_masked_drift_and_a_figure_against_worst_group(drift_report, tmp_path, monkeypatch):
    table = read(drift_report / "table_group_shift_waterbirds.csv")
    col = "Drift (masked KL)"
    assert list(table.columns)[-2:] == [col, "Seeds"]
    assert table.loc["flyp", col] == "0.060 ± 0.010"
    assert table.loc["starft", col] == "0.030 ± 0.017"   # 0.02, 0.02, 0.05: sample std 0.0173
    assert table.loc["zeroshot", col] == "0.000 ± 0.000"
    assert table.loc["ft", col] == ""
    assert (drift_report / "drift_waterbirds.png").stat().st_size > 0
    assert "![worst-group accuracy vs spuriosity drift, waterbirds](drift_waterbirds.png)" in (
        drift_report / "report.md").read_text()

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, ax, path, title: drawn.append((ax, title)))
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": ["ft", "flyp", "starft"], "wiseft_of": "flyp"},
           "evaluate": {"groups": ["waterbirds"]}}
    build([section(drift_records(), config=cfg)], "imagenet", tmp_path / "out")
    ax = next(ax for ax, title in drawn if "spuriosity drift" in title)
    points = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert set(points) == {"zeroshot", "flyp", "starft"}       # ft has no drift: no point
    x, y = points["flyp"].lines[0].get_data()
    # flyp's waterbirds test accuracy 77, 80, 80 -> worst group (-20) 57, 60, 60
    assert x[0] == pytest.approx(0.06) and y[0] == pytest.approx(59.0)
    # error bars: std over seeds, drift 0.01 across, worst group sqrt(3) up and down
    (xbar,), (ybar,) = ([seg for seg in c.get_segments()] for c in points["flyp"].lines[2])
    assert xbar[:, 0] == pytest.approx([0.05, 0.07]) and ybar[:, 1] == pytest.approx([59 - 3 ** 0.5, 59 + 3 ** 0.5])


def test_reading_states_starfts_drift_against_flyps(drift_report):
    md = (drift_report / "report.md").read_text()
    line = next(line for line in md.splitlines() if line.startswith("**Spuriosity drift, StarFT against FLYP**"))
    # waterbirds: starft - flyp = -0.03, -0.04, -0.02 -> -0.03 ± 0.01, 0.03 > 2 * 0.01 / sqrt(3): lower
    assert ("Drift, waterbirds (masked KL): starft 0.03 vs flyp 0.06 nats, paired difference −0.03 ± 0.01 (3 seeds): "
            "lower (closer to the teacher)") in line
    # shift mean (unmasked): -0.1, -0.13, -0.07 -> -0.1 ± 0.03: lower
    assert "Drift, shift mean (KL): starft 0.1 vs flyp 0.2 nats, paired difference −0.1 ± 0.03 (3 seeds): lower" in line


def test_records_without_drift_give_no_drift_column_figure_or_sentence(tmp_path):
    recs = [r for r in drift_records() if r["method"] != "starft"]
    for r in recs:
        for m in r["splits"].values():
            m.pop("spuriosity_drift", None)
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": ["ft", "flyp"], "wiseft_of": "flyp"},
           "evaluate": {"shifts": ["imagenet_v2", "imagenet_r"], "groups": ["waterbirds"]}}
    build([section(recs, config=cfg)], "imagenet", tmp_path / "out")
    for name in ("table_domain_shift.csv", "table_group_shift_waterbirds.csv"):
        assert not any(c.startswith("Drift") for c in read(tmp_path / "out" / name).columns)
    assert not (tmp_path / "out/drift_waterbirds.png").exists()
    assert "Spuriosity drift" not in (tmp_path / "out/report.md").read_text()


# ---------------------------------------------------------------- transfer: the summary over the sets

def transfer_section(target, methods=("zeroshot", "ft", "flyp"), drop=()):
    cfg = {"train": target, "finetune": {"methods": ["ft", "flyp"], "wiseft_of": "flyp", "wiseft_alpha": 0.5,
                                         "select": "last"}}
    recs = [record(m, s, target, experiment=f"transfer_{target}", role="id", train=target)
            for m in methods for s in SEEDS if (m, s) not in drop]
    return {"title": f"Transfer: {target}", "experiment": f"transfer_{target}", "config": cfg, "records": recs}


def test_transfer_report_has_each_sets_accuracy_and_their_per_seed_mean(tmp_path):
    # ft's seed 2 on flowers102 is missing: its mean is over seeds 0 and 1 only, not a mean of fewer sets
    build([transfer_section("caltech101"), transfer_section("flowers102", drop={("ft", 2)})], "transfer",
          tmp_path / "out")
    table = read(tmp_path / "out/table_summary.csv")
    assert list(table.index) == ["zeroshot", "ft", "flyp"]
    assert list(table.columns) == ["caltech101", "flowers102", "Mean over the sets", "Seeds"]
    # flyp: caltech101 test 87, 93, 87; flowers102 64, 64, 70 -> per-seed means 75.5, 78.5, 78.5
    assert table.loc["flyp", "caltech101"] == "89.0 ± 3.5"
    assert table.loc["flyp", "Mean over the sets"] == "77.5 ± 1.7"     # not the mean of the columns' stds
    # ft: caltech101 85, 91, 85; flowers102 62, 62 (seed 2 missing) -> seed means 73.5, 76.5
    assert table.loc["ft", "Mean over the sets"] == "75.0 ± 2.1"
    md = (tmp_path / "out/report.md").read_text()
    assert md.index("## Summary over the sets") < md.index("## Transfer: caltech101")
    # each section shows its own accuracy table and reads it
    section_table = read(tmp_path / "out/transfer_flowers102_table_id.csv")
    assert section_table.loc["flyp", "flowers102 (ID)"] == "66.0 ± 3.5"
    assert "Headline metrics: flowers102 ID accuracy." in md


def test_a_report_of_other_sections_has_no_summary(tmp_path):
    build([section(), transfer_section("caltech101")], "mixed", tmp_path / "out")
    assert not (tmp_path / "out/table_summary.csv").exists()
    assert "## Summary over the sets" not in (tmp_path / "out/report.md").read_text()


# ---------------------------------------------------------------- variants named by what they change

def test_variant_rows_say_what_they_change(tmp_path):
    cfg = {**CONFIG, "finetune": {**CONFIG["finetune"], "methods": ["flyp", "starft", "starft_lam5", "starft_bg"],
                                  "wiseft_of": "flyp",
                                  "variants": {"starft_lam5": {"method": "starft", "lambda": 5},
                                               "starft_bg": {"method": "starft", "spurious_types": ["background"]}}},
           "evaluate": {"groups": ["waterbirds"]}}
    recs = [record("flyp", s, t) | {"method": m} for m in ("zeroshot", "flyp", "starft", "starft_lam5", "starft_bg")
            for s in SEEDS for t in ("imagenet", "waterbirds")]
    build([section(recs, config=cfg)], "imagenet", tmp_path / "out")
    table = read(tmp_path / "out/table_group_shift_waterbirds.csv")
    assert table.columns[0] == "Changes"
    assert table["Changes"].to_dict() == {"zeroshot": "", "flyp": "", "starft": "", "starft_lam5": "starft, lambda 5",
                                          "starft_bg": "starft, background pool"}
    assert "| starft_lam5 | starft, lambda 5" in (tmp_path / "out/report.md").read_text()



def test_the_teachers_own_drift_reads_zero_whatever_its_float_noise():
    assert format_drift(-1.17e-09, float("nan")) == "0.000"      # zero-shot: one run, no std
    assert format_drift(3.28e-09, 1e-10) == "0.000 ± 0.000"
    assert format_drift(0.0943, 0.0037) == "0.094 ± 0.004"
    assert format_drift(float("nan"), float("nan")) == ""
