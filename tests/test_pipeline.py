import json
import re

import pandas as pd
import pytest

from pipeline import REDUCED, make_workdir, snakemake


@pytest.mark.slow
def test_synthbirds_zeroshot_report(tmp_path):
    work = make_workdir(tmp_path, REDUCED)
    snakemake(work, "results/synthbirds")
    report = (work / "results/synthbirds/report.md").read_text()
    metrics = json.loads((work / "results/runs/synthbirds/zeroshot/seed0/metrics.json").read_text())
    test = metrics["splits"]["test"]
    # the report's zero-shot row carries the evaluated numbers
    row = next(line for line in report.splitlines() if line.startswith("| zeroshot"))
    assert f"{test['worst_group']:.1f}" in row and f"{test['average']:.1f}" in row
    assert test["worst_group"] == pytest.approx(min(test["group_accuracy"]))
    table = pd.read_csv(work / "results/synthbirds/table_test.csv", index_col=0)
    assert list(table.columns[:3]) == ["Worst-group", "Average", "Adj. average"]
    assert "landbird / water" in table.columns
    assert (work / "results/synthbirds/groups_test.png").stat().st_size > 1000
    assert "\\begin{tabular}" in (work / "results/synthbirds/table_test.tex").read_text()
    # provenance: the run records the model identity and the evaluation config
    assert metrics["model"]["name"] == "local-dir:data/synthbirds/clip"
    assert re.fullmatch(r"[0-9a-f]{64}", metrics["model"]["weights_sha256"])
    assert metrics["evaluate"]["templates"][0] == "This is a picture of a {}."


def test_bad_config_fails_before_any_job(tmp_path):
    work = make_workdir(tmp_path, {**REDUCED, "finetune": {"epochz": 3}})
    proc = snakemake(work, "-n", "results/synthbirds", check=False)
    assert proc.returncode != 0
    assert "config key synthbirds.finetune: unknown key(s) ['epochz']" in proc.stdout + proc.stderr
    assert not (work / "data").exists()


def test_waterbirds_dry_run_lists_the_dag_and_real_run_fails_at_once(tmp_path):
    work = make_workdir(tmp_path, REDUCED)
    dry = snakemake(work, "-n", "results/waterbirds")
    for rule in ("check_data", "evaluate", "report"):
        assert rule in dry.stdout
    proc = snakemake(work, "data/waterbirds/data_check.json", check=False)
    assert proc.returncode != 0
    assert ("metadata.csv not found: put the extracted `waterbird_complete95_forest2water2/` folder"
            in proc.stderr)
    assert not (work / "data/waterbirds/data_check.json").exists()
