"""config/paper.yaml's transfer experiments (the paper's section 4.4): FLYP's published transfer
recipe on Caltech101, Stanford Cars, Flowers102 and SUN397, trained on a split that never meets
the reported test split; results/transfer's DAG; and the shipped configuration end to end on
tiny trees in the published layouts with a tiny CLIP."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml
from helpers import make_tiny_clip
from pipeline import make_workdir, snakemake
from trees import write_caltech101

from stages.config import checked_splits, load, target_roles, train_job
from stages.datasets import EVAL_SPLITS, static_classnames

SETS = ["caltech101", "stanford_cars", "flowers102", "sun397"]
EXPERIMENTS = [f"transfer_{s}" for s in SETS]
# locuslab/FLYP README, "Transfer Learning on Caltech" / "on StanfordCars"
FLYP = {"epochs": 100, "lr": 1e-5, "weight_decay": 0.0, "batch_size": 256, "warmup_steps": 500}


@pytest.fixture(scope="module")
def paper():
    return load("config/synthbirds.yaml", "config/paper.yaml")


def test_transfer_experiments_use_flyps_recipe(paper):
    for s, name in zip(SETS, EXPERIMENTS):
        e = paper["experiments"][name]
        ft = e["finetune"]
        assert e["train"] == s and e["model"] == paper["experiments"]["imagenet"]["model"]
        expected = {**FLYP, "warmup_steps": 30} if s == "flowers102" else FLYP   # 300 steps in all
        assert {k: ft[k] for k in FLYP} == expected, name
        assert ft["seeds"] == [0, 1, 2] and ft["select"] == "last"
        assert ft["methods"] == ["zeroshot", "lp", "ft", "lpft", "flyp", "flyp_kl", "starft"]
        assert ft["spurious_types"] == ["background"] and ft["kl_scale"] == "teacher"
        # scored on the set's test split only; trained on train, any choice on val: never test
        assert target_roles(e) == {s: "id"} and EVAL_SPLITS[s] == ["test"]
        assert (ft["train_split"], ft["val_split"]) == ("train", "val")
        assert "test" not in (ft["train_split"], ft["val_split"])
        assert checked_splits(paper, s) == ["test", "train", "val"]
        # the readers name the classes: nothing to list by hand
        assert paper["datasets"][s]["classnames"] is None
        assert train_job(paper, name)["classnames"] == static_classnames(s)
    # one LLM pass writes the pools of the four experiments
    assert paper["experiments"]["transfer_caltech101"]["describe"]["pools_of"] is None
    assert {paper["experiments"][n]["describe"]["pools_of"] for n in EXPERIMENTS[1:]} == {"transfer_caltech101"}
    assert [s["experiment"] for s in paper["reports"]["transfer"]] == EXPERIMENTS


def test_transfer_dag(tmp_path):
    work = make_workdir(tmp_path, {})
    dry = snakemake(work, "-n", "results/transfer").stdout
    trained = set(re.findall(r"results/runs/(transfer_\w+)/(\w+)/seed(\d)/checkpoint\.pt", dry))
    assert trained == {(e, m, s) for e in EXPERIMENTS for m in ("lp", "ft", "lpft", "flyp", "flyp_kl", "starft")
                       for s in "012"}
    for e in EXPERIMENTS:
        assert f"results/runs/{e}/zeroshot/seed0/eval" in dry and f"results/runs/{e}/wiseft/seed2/eval" in dry
    # only the four sets are checked (no ImageNet: the pools are the transfer experiments' own)
    assert sorted(re.findall(r"output: data/(\w+)/data_check\.json", dry)) == sorted(SETS)
    assert len(re.findall(r"^\s*(?:local)?rule describe:", dry, flags=re.MULTILINE)) == 1


POOL = "a photo of a {} in the forest.\na photo of a {} on a lake.\na photo of a {} in the snow.\n"


@pytest.mark.slow
def test_shipped_transfer_experiment_runs_end_to_end_on_tiny_trees(tmp_path, paper):
    """The shipped transfer_caltech101 (its splits, recipe keys and report section as
    config/paper.yaml has them; three of its rows, one seed, two epochs) on a tiny Caltech101 tree
    with a tiny CLIP: results/transfer from data check to report."""
    (tmp_path / "work").mkdir()
    work = make_workdir(tmp_path / "work", {})
    (work / "pool.txt").write_text(POOL)
    model = make_tiny_clip(tmp_path / "clip")
    override = {
        # 101 classes: one template keeps the heads cheap
        "datasets": {"caltech101": {"root": str(write_caltech101(tmp_path / "caltech")),
                                    "templates": ["a photo of a {}."]}},
        "experiments": {"transfer_caltech101": {
            "model": {"name": model},
            "evaluate": {"device": "cpu", "num_workers": 0},
            "describe": {"backend": "file", "files": {"background": "pool.txt"}, "min_pool": 3},
            "finetune": {"methods": ["zeroshot", "lp", "starft"], "seeds": [0], "epochs": 2, "batch_size": 8,
                         "warmup_steps": 1, "lr": 1e-4, "device": "cpu", "num_workers": 0,
                         "lp_l2_grid": [1e-3]}}},
        "reports": {"transfer": paper["reports"]["transfer"][:1]}}
    (work / "override.yaml").write_text(yaml.safe_dump(override))
    snakemake(work, "results/transfer")

    runs = work / "results/runs/transfer_caltech101"
    for method in ("zeroshot", "lp", "starft"):
        rec = json.loads((runs / method / "seed0/eval/caltech101.json").read_text())
        assert rec["role"] == "id" and list(rec["splits"]) == ["test"], method
        assert len(rec["classnames"]) == 101
    # trained on `train`: 72 of the 90 published training images, 9 steps an epoch at batch 8
    log = pd.read_csv(runs / "starft/seed0/train_log.csv")
    assert log["epoch"].max() == 1 and log["step"].max() == 2 * 72 // 8
    check = json.loads((work / "data/caltech101/data_check.json").read_text())
    assert {s: check["splits"][s]["n_images"] for s in ("train", "val", "test")} == {"train": 72, "val": 18, "test": 6}
    report = (work / "results/transfer/report.md").read_text()
    assert "Transfer: Caltech101" in report
