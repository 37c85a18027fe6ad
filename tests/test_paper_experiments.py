"""config/paper.yaml's ImageNet rows as the released script runs them, and the ImageNet ablation
(the paper's section 4.5): each variant changes one thing of the released StarFT row; the DAGs of
both targets; the ablation's configuration end to end on tiny trees in the published layouts."""

from __future__ import annotations

import copy
import json
import re

import pandas as pd
import pytest
import yaml
from helpers import make_tiny_clip
from pipeline import REDUCED, make_workdir, snakemake
from trees import write_imagenet, write_imagenet_v2, write_waterbirds

from stages.config import load, merge, report_methods
from stages.finetune.runs import HPARAMS, RUNTIME, run_config
from stages.method.registry import run_label


@pytest.fixture(scope="module")
def paper():
    return load("config/synthbirds.yaml", "config/paper.yaml")


def changes(ft: dict, name: str, ref: dict) -> dict:
    """What run `name` sets differently from the reference run `ref` (its name aside)."""
    return {k: v for k, v in run_config(ft, name).items() if k != "name" and ref.get(k, "absent") != v}


def test_imagenet_rows_are_the_released_ones(paper):
    e = paper["experiments"]["imagenet"]
    ft = e["finetune"]
    starft = run_config(ft, "starft")
    # alinlab/StarFT: `train.sh contrastive spurious_bg star 0.5`, one pool; its `kl` at tau0
    assert starft["spurious_types"] == ["background"] and starft["lambda"] == 0.5
    assert starft["schedule"] == "diminishing" and starft["epochs"] == 10 and starft["batch_size"] == 512
    assert run_config(ft, "flyp_kl")["kl_scale"] == "teacher"
    # beside them, each variant differs only in what its name says
    assert changes(ft, "starft_all", starft) == {"spurious_types": None}
    assert changes(ft, "flyp_kl_student", run_config(ft, "flyp_kl")) == {"kl_scale": "student"}
    # the peers' rows: the linear probe and WiSE-FT of FLYP (the curve, the tables at alpha 0.5)
    assert report_methods(e) == ["zeroshot", "lp", "ft", "lpft", "flyp", "flyp_kl", "flyp_kl_student", "starft",
                                 "starft_all", "wiseft"]
    assert ft["wiseft_of"] == "flyp" and ft["wiseft_alpha"] == 0.5
    assert ft["wiseft_alphas"] == pytest.approx([a / 10 for a in range(11)])


ABLATION = {   # run -> what it changes of the released starft row
    "ft": {"method": "ft"}, "flyp": {"method": "flyp"},
    "starft_lam0p1": {"lambda": 0.1}, "starft_lam1": {"lambda": 1}, "starft_lam5": {"lambda": 5},
    "starft_texture": {"spurious_types": ["texture"]}, "starft_quality": {"spurious_types": ["quality"]},
    "starft_all": {"spurious_types": None},
    "flyp_kl": {"method": "flyp_kl"}, "flyp_kl_student": {"method": "flyp_kl", "kl_scale": "student"},
    "starft_ce": {"method": "starft_ce"}, "starft_constant": {"schedule": "constant"},
}


def test_each_ablation_run_changes_one_thing_of_the_released_row(paper):
    e = paper["experiments"]["imagenet_ablation"]
    ft = e["finetune"]
    starft = run_config(ft, "starft")
    assert {m: changes(ft, m, starft) for m in ft["methods"] if m not in ("zeroshot", "starft")} == ABLATION
    # the reference row is the ImageNet experiment's starft, trained on the same data and teacher
    released = run_config(paper["experiments"]["imagenet"]["finetune"], "starft")
    assert {k: starft.get(k) for k in HPARAMS} == {k: released.get(k) for k in HPARAMS}
    assert (e["train"], e["model"]) == ("imagenet", paper["experiments"]["imagenet"]["model"])
    assert e["describe"]["pools_of"] == "imagenet" and e["finetune"]["seeds"] == [0]


def test_a_row_is_labelled_by_what_it_changes(paper):
    ft = paper["experiments"]["imagenet_ablation"]["finetune"]
    labels = {m: run_label(ft, m) for m in ft["methods"]}
    assert labels["starft"] == "starft" and labels["starft_ce"] == "starft_ce"
    assert labels["starft_lam0p1"] == "starft, lambda 0.1"
    assert labels["starft_all"] == "starft, all pools"
    assert labels["starft_texture"] == "starft, texture pool"
    assert labels["flyp_kl_student"] == "flyp_kl, the student's logit scale"
    assert labels["starft_constant"] == "starft, constant lambda"
    assert run_label({"variants": {"v": {"method": "starft", "spurious_types": ["texture", "quality"],
                                         "epochs": 3}}}, "v") == "starft, texture + quality pools, epochs 3"


def distinct_runs(cfg: dict) -> set:
    """The distinct trainings of the imagenet experiments, computed here from the config alone: what a
    run reads (data set, teacher, whose pools of which types), its resolved run config less the keys
    that only say how to run it (RUNTIME, but for the splits it trains and selects on) and its seed."""
    out = set()
    for name in ("imagenet", "imagenet_ablation"):
        e = cfg["experiments"][name]
        ft = e["finetune"]
        for m in ft["methods"]:
            if m in ("zeroshot", "wiseft"):
                continue
            run = {k: v for k, v in run_config(ft, m).items() if k not in RUNTIME or k.endswith("_split")}
            pools = e["describe"]["pools_of"] or name
            for seed in ft["seeds"]:
                out.add(json.dumps([e["train"], e["model"], pools, sorted(e["describe"]["types"]), run, seed],
                                   sort_keys=True))
    return out


def test_imagenet_and_ablation_dags(tmp_path, paper):
    # an override of imagenet reaches imagenet_ablation, which inherits it (and stays a run-time key);
    # 8 processes x (11 workers + 1) fill the default node's 96 cores (the default 12 would not fit)
    work = make_workdir(tmp_path, merge(copy.deepcopy(REDUCED), {"experiments": {"imagenet": {"finetune": {
        "processes": 8, "num_workers": 11}}}}))
    dry = snakemake(work, "-n", "-p", "results/imagenet", "results/imagenet_ablation").stdout
    assert re.search(r"wildcards: experiment=imagenet_ablation, method=starft_lam5, seed=0\n.*\n.*gpu=8,.*\n"
                     r"Shell command: torchrun --standalone --nproc_per_node 8 ", dry)
    trained = set(re.findall(r"results/runs/(imagenet\w*)/(\w+)/seed(\d)/checkpoint\.pt", dry))
    imagenet = ["lp", "ft", "lpft", "flyp", "flyp_kl", "flyp_kl_student", "starft", "starft_all"]
    # the ablation's seed-0 runs of the same settings as imagenet's are imagenet's: trained once
    ablation = [m for m in ABLATION if m not in ("ft", "flyp", "starft_all", "flyp_kl", "flyp_kl_student")]
    assert trained == ({("imagenet", m, s) for m in imagenet for s in "012"}
                       | {("imagenet_ablation", m, "0") for m in ablation})
    jobs = len(re.findall(r"^\s*(?:local)?rule finetune:", dry, flags=re.MULTILINE))
    assert jobs == len(trained) == len(distinct_runs(paper)) == 31
    # the ablation evaluates imagenet's checkpoint of each shared run, with its own settings
    assert re.search(r"input: [^\n]*results/runs/imagenet/starft/seed0/checkpoint\.pt[^\n]*\n\s*output: "
                     r"results/runs/imagenet_ablation/starft/seed0/eval\n", dry)
    assert "results/runs/imagenet/wiseft/seed2/eval" in dry and "results/runs/imagenet_ablation/wiseft/seed0/eval" in dry
    # every probe and fine-tuning job waits on its experiment's pre-flight (a local job), one per experiment
    assert len(re.findall(r"^\s*(?:local)?rule preflight:", dry, flags=re.MULTILINE)) == 2
    checked = dict(re.findall(r"stages\.preflight schedule --experiment (\w+) --runs '(\{.*?\})' ", dry))
    assert sorted(json.loads(checked["imagenet_ablation"])) == sorted(ablation)   # imagenet checks the shared ones
    assert sorted(json.loads(checked["imagenet"])) == sorted(imagenet)
    inputs = re.findall(r"rule (?:finetune|probe):\n\s*input: ([^\n]*)", dry)
    assert len(inputs) == jobs + 1 and all(re.match(r"data/imagenet(_ablation)?/preflight\.json, ", i) for i in inputs)
    # the ablation's report names the runs imagenet trained for it (imagenet's own names none)
    specs = dict(re.findall(r"python -m stages\.report --name (\w+) --spec '(\{.*?\})' ", dry))
    assert [s["shared"] for s in json.loads(specs["imagenet_ablation"])["sections"]] == [
        {"imagenet": {m: [0] for m in ("ft", "flyp", "starft", "starft_all", "flyp_kl", "flyp_kl_student")}}]
    assert [s["shared"] for s in json.loads(specs["imagenet"])["sections"]] == [{}]
    # the teacher's weights are fetched once, by a local job, before any job that loads them
    fetched = "data/models/open_clip/fetched/ViT-B-16-quickgelu/openai.json"
    assert re.findall(r"^\s*(?:local)?rule fetch_clip:\n\s*output: (\S+)", dry, flags=re.MULTILINE) == [fetched]
    loading = re.findall(r"rule (?:finetune|probe|evaluate|embed):\n\s*input: ([^\n]*)", dry)
    assert len(loading) > jobs and all(fetched in i.split(", ") for i in loading)
    # one LLM pass writes the pools of both experiments
    assert len(re.findall(r"^\s*(?:local)?rule describe:", dry, flags=re.MULTILINE)) == 1


POOLS = {"background": "a photo of a {} in the forest.\na photo of a {} on a lake.\na photo of a {} in the snow.\n",
         "texture": "a photo of a striped {}.\na photo of a spotted {}.\na photo of a furry {}.\n",
         "quality": "a blurry photo of a {}.\na pixelated photo of a {}.\na dark photo of a {}.\n"}


# one run per axis of the ablation (the others are the same keys at other values), the reference
# row, and zero-shot: 8 trainings instead of 13
AXES = ["zeroshot", "starft", "starft_lam5", "starft_texture", "starft_all", "flyp_kl", "flyp_kl_student",
        "starft_ce", "starft_constant"]


@pytest.mark.slow
def test_the_shipped_ablation_runs_end_to_end_on_tiny_trees(tmp_path, paper):
    """The shipped imagenet_ablation's variants (as config/paper.yaml defines them), one per axis,
    with a tiny CLIP, two epochs and small trees of ImageNet, ImageNet-V2 and Waterbirds."""
    ft = paper["experiments"]["imagenet_ablation"]["finetune"]
    assert set(AXES) <= set(ft["methods"])
    (tmp_path / "work").mkdir()
    work = make_workdir(tmp_path / "work", {})
    for kind, text in POOLS.items():
        (work / f"{kind}.txt").write_text(text)
    model = make_tiny_clip(tmp_path / "clip")
    one = ["a photo of a {}."]   # 1000 classes: one template keeps the heads cheap
    override = {
        "datasets": {"imagenet": {"root": str(write_imagenet(tmp_path / "imagenet")), "templates": one},
                     "imagenet_v2": {"root": str(write_imagenet_v2(tmp_path / "v2")), "templates": one},
                     "waterbirds": {"root": str(write_waterbirds(tmp_path / "waterbirds"))}},
        "experiments": {
            "imagenet": {"describe": {"backend": "file", "files": {k: f"{k}.txt" for k in POOLS}, "min_pool": 3}},
            "imagenet_ablation": {
                "model": {"name": model},
                "evaluate": {"shifts": ["imagenet_v2"], "groups": ["waterbirds"], "device": "cpu", "num_workers": 0},
                # 12 images, batch 4, 2 epochs (one epoch would give the diminishing lambda 0 throughout)
                "finetune": {"methods": AXES, "epochs": 2, "batch_size": 4, "lr": 1e-4, "warmup_steps": 1,
                             "device": "cpu", "num_workers": 0}}}}
    (work / "override.yaml").write_text(yaml.safe_dump(override))
    snakemake(work, "results/imagenet_ablation")

    runs = work / "results/runs/imagenet_ablation"
    for method in AXES:
        rec = json.loads((runs / method / "seed0/eval/imagenet.json").read_text())
        assert (runs / method / "seed0/eval/waterbirds.json").is_file()
        if method == "zeroshot":
            continue
        # each run trained with the change its name promises (the record is the run's own)
        cfg = rec["train_config"]
        for key, value in ABLATION.get(method, {}).items():
            assert cfg[key] == value, (method, key)
        log = pd.read_csv(runs / method / "seed0/train_log.csv")
        lam = log.groupby("epoch")["lambda"].first().to_dict()
        if method == "starft_constant":
            assert lam == {0: 0.5, 1: 0.5}
        elif method == "starft_lam5":
            assert lam == {0: 2.5, 1: 0.0}   # diminishing: lambda * (1 - (e + 1) / epochs)
        else:
            assert lam == {0: 0.25, 1: 0.0}
            assert (log["regularizer"] > 0).any()   # the regulariser was computed, not skipped
    table = pd.read_csv(work / "results/imagenet_ablation/table_domain_shift.csv", index_col=0)
    assert list(table.index) == AXES
    report = (work / "results/imagenet_ablation/report.md").read_text()
    assert "lambda 5 diminishing" in report and "lambda 0.5 constant" in report and "texture;" in report
