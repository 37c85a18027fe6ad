import json
import re

import pandas as pd
import pytest
import yaml

from pipeline import REDUCED, make_workdir, reduced, snakemake

from stages.report.tables import GROUP_METRICS


@pytest.mark.slow
def test_synthbirds_zeroshot_report(tmp_path):
    work = make_workdir(tmp_path, REDUCED)
    # one table as a target of its own: the report is built, and the table copied beside it
    snakemake(work, "results/tables/synthbirds_intask/table_group_shift_synthbirds.csv")
    assert ((work / "results/tables/synthbirds_intask/table_group_shift_synthbirds.csv").read_bytes()
            == (work / "results/synthbirds_intask/table_group_shift_synthbirds.csv").read_bytes())
    report = (work / "results/synthbirds_intask/report.md").read_text()
    metrics = json.loads((work / "results/runs/synthbirds_intask/zeroshot/seed0/eval/synthbirds.json").read_text())
    assert metrics["role"] == "id" and set(metrics["splits"]) == {"val", "test"}
    test = metrics["splits"]["test"]
    # the report's zero-shot row carries the evaluated numbers (in-task: the group-shift table of
    # the training set's test split)
    section = report[report.index("#### synthbirds"):]
    row = next(line for line in section.splitlines() if line.startswith("| zeroshot"))
    assert f"{test['worst_group']:.1f}" in row and f"{test['average']:.1f}" in row
    assert test["worst_group"] == pytest.approx(min(test["group_accuracy"]))
    table = pd.read_csv(work / "results/synthbirds_intask/table_group_shift_synthbirds.csv", index_col=0)
    # the threshold-free companions stand beside the raw worst group (two classes: all of them)
    assert list(table.columns[:len(GROUP_METRICS)]) == list(GROUP_METRICS.values())
    assert "landbird on water" in table.columns
    assert (work / "results/synthbirds_intask/groups_synthbirds.png").stat().st_size > 1000
    assert "\\begin{tabular}" in (work / "results/synthbirds_intask/table_group_shift_synthbirds.tex").read_text()
    # provenance: the run records the model identity and the evaluation config
    assert metrics["model"]["name"] == "local-dir:data/synthbirds/clip"
    assert re.fullmatch(r"[0-9a-f]{64}", metrics["model"]["weights_sha256"])
    assert metrics["classnames"] == ["landbird", "waterbird"] and metrics["head"] == "zeroshot"
    # Snakemake's own report: the tables and figures, each with its caption
    import zipfile
    snakemake(work, "--report", "report.zip", "results/synthbirds_intask")
    with zipfile.ZipFile(work / "report.zip") as z:
        files = {name.rsplit("/", 1)[-1] for name in z.namelist()}
        html = z.read("report/report.html").decode()
    assert {"groups_synthbirds.png", "table_group_shift_synthbirds.csv", "metrics_long.csv"} <= files
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html).group(1))
    captions = {key.rsplit("/", 1)[-1]: entry["caption"] for key, entry in results.items()}
    assert "Per-group accuracy (%) on <strong>synthbirds</strong> in synthbirds_intask" in captions["groups_synthbirds.png"]
    assert "Group shift on <strong>synthbirds</strong>" in captions["table_group_shift_synthbirds.csv"]
    assert "one row per (experiment, target, method, seed, split)" in captions["metrics_long.csv"]
    assert "StarFT pipeline" in html  # the workflow description


def test_bad_config_fails_before_any_job(tmp_path):
    work = make_workdir(tmp_path, reduced(finetune={"epochz": 3}))
    proc = snakemake(work, "-n", "results/synthbirds_intask", check=False)
    assert proc.returncode != 0
    assert "config key experiments.synthbirds_intask.finetune: unknown key(s) ['epochz']" in proc.stdout + proc.stderr
    assert not (work / "data").exists()


def test_waterbirds_real_run_fails_at_once(tmp_path):
    work = make_workdir(tmp_path, REDUCED)
    proc = snakemake(work, "data/waterbirds/data_check.json", check=False)
    assert proc.returncode != 0
    assert "waterbird_complete95_forest2water2 not found: put the extracted waterbird_complete95_forest2water2/" in proc.stderr
    assert "or fetch it: snakemake --cores 1 data/waterbirds/prepared" in proc.stderr
    assert not (work / "data/waterbirds/data_check.json").exists()


@pytest.mark.slow
def test_synthbirds_two_methods_with_wiseft(tmp_path):
    """The whole DAG: world, tiny CLIP, real SmolLM2 pool, embed, fine-tune, evaluate, report."""
    finetune = {"methods": ["zeroshot", "ft", "starft"], "seeds": [0, 1], "epochs": 1, "batch_size": 32,
                "lr": 1e-4, "warmup_steps": 2, "wiseft_of": "ft", "wiseft_alphas": [0.0, 0.5, 1.0]}
    work = make_workdir(tmp_path, reduced(finetune=finetune))
    snakemake(work, "results/synthbirds_intask")
    out = work / "results/synthbirds_intask"
    table = pd.read_csv(out / "table_group_shift_synthbirds.csv", index_col=0)
    assert list(table.index) == ["zeroshot", "ft", "starft", "wiseft"]
    # zero-shot is one run (it trains and draws nothing), every other method one per seed
    assert table["Seeds"].to_dict() == {"zeroshot": 1, "ft": 2, "starft": 2, "wiseft": 2}
    assert not (work / "results/runs/synthbirds_intask/zeroshot/seed1").exists()
    # mean ± std over the two seeds, as the runs' metrics say
    runs = [json.loads((work / f"results/runs/synthbirds_intask/starft/seed{s}/eval/synthbirds.json").read_text()) for s in (0, 1)]
    worst = pd.Series([r["splits"]["test"]["worst_group"] for r in runs])
    assert table.loc["starft", "Worst-group"] == f"{worst.mean():.1f} ± {worst.std():.1f}"
    # WiSE-FT at alpha 0 is the zero-shot model, at alpha 1 the fine-tuned ft run
    wise, ft, zs = (json.loads((work / f"results/runs/synthbirds_intask/{m}/seed0/eval/synthbirds.json").read_text())
                    for m in ("wiseft", "ft", "zeroshot"))
    by_alpha = {p["alpha"]: p["splits"]["test"] for p in wise["wiseft"]}
    assert by_alpha[1.0]["average"] == pytest.approx(ft["splits"]["test"]["average"], abs=0.2)
    assert by_alpha[0.0]["average"] == pytest.approx(zs["splits"]["test"]["average"], abs=0.2)
    assert (out / "wiseft_synthbirds.png").stat().st_size > 1000
    log = pd.read_csv(work / "results/runs/synthbirds_intask/starft/seed0/train_log.csv")
    assert {"step", "epoch", "loss", "regularizer", "lambda", "lr", "images_per_s"} <= set(log.columns)
    pool = pd.read_parquet(work / "data/synthbirds_intask/pools/background.descriptions.parquet")
    assert len(pool) >= 3 and pool["template"].str.count(r"\{\}").eq(1).all()

    # Adding a method schedules that method's jobs and the report, nothing else: each rule's params
    # hold only what its stage reads. Turning live tracking on reruns no finished run (it changes no
    # result), and the new runs get it.
    (work / "override.yaml").write_text(yaml.safe_dump(
        reduced(finetune={**finetune, "methods": finetune["methods"] + ["flyp"], "track": ["tensorboard"]})))
    dry = snakemake(work, "-n", "-p", "results/synthbirds_intask")
    jobs = re.findall(r"^\s*rule (\w+):|^localrule (\w+):", dry.stdout, flags=re.M)
    scheduled = sorted(a or b for a, b in jobs)
    assert scheduled == sorted(["finetune", "finetune", "evaluate", "evaluate", "report"]), dry.stdout[-3000:]
    assert dry.stdout.count("""--set 'track=["tensorboard"]'""") == 2
