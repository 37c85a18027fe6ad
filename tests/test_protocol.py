"""The paper's protocol end to end on CPU: a tiny local-dir CLIP fine-tuned once on a small tree in
ILSVRC-2012's layout, every run evaluated on a small tree of every published layout (ImageNet's
five shifts, Waterbirds and CelebA zero-shot, four zero-shot sets), and every table written; and
the shipped ImageNet/Waterbirds targets' DAGs, with the one-line stop when the data are absent."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml
from helpers import make_tiny_clip
from pipeline import REDUCED, make_workdir, snakemake
from trees import write_all, write_imagenet, write_waterbirds

SHIFTS = ["imagenet_v2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet"]
GROUPS = ["waterbirds", "celeba"]
ZEROSHOT = ["caltech101", "flowers102", "stanford_cars", "sun397"]
POOL = "a photo of a {} in the forest.\na photo of a {} on a lake.\na photo of a {} in the snow.\n"


def protocol_config(roots: dict, model: str) -> dict:
    """The shipped data set names pointed at the small trees, and a small experiment over them."""
    datasets = {name: {"reader": name, "root": str(root)} for name, root in roots.items()}
    for name in ["imagenet", *SHIFTS]:   # 1000 classes: one template keeps the heads cheap
        datasets[name]["templates"] = ["a photo of a {}."]
    finetune = {"methods": ["zeroshot", "flyp"], "wiseft_of": "flyp", "wiseft_alphas": [0.0, 1.0],
                "seeds": [0], "epochs": 1, "batch_size": 4, "lr": 1e-4, "warmup_steps": 1,
                "device": "cpu", "num_workers": 0}
    experiment = {"domain": "natural images", "train": "imagenet", "model": {"name": model},
                  "evaluate": {"shifts": SHIFTS, "groups": GROUPS, "zeroshot": ZEROSHOT, "device": "cpu",
                               "num_workers": 0, "batch_size": 64},
                  "describe": {"backend": "file", "types": ["background"], "files": {"background": "pool.txt"},
                               "min_pool": 3},
                  "finetune": finetune}
    return {"datasets": datasets, "experiments": {"tiny_imagenet": experiment},
            "reports": {"tiny_waterbirds": [{"experiment": "tiny_imagenet", "targets": ["waterbirds"],
                                             "title": "Zero-shot group shift"}]}}


@pytest.mark.slow
def test_fine_tune_once_evaluate_on_every_layout(tmp_path):
    (tmp_path / "work").mkdir()
    work = make_workdir(tmp_path / "work", {})
    roots = write_all(tmp_path / "trees")
    model = make_tiny_clip(tmp_path / "clip")
    (work / "pool.txt").write_text(POOL)
    (work / "override.yaml").write_text(yaml.safe_dump(protocol_config(roots, model)))
    snakemake(work, "results/tiny_imagenet", "results/tiny_waterbirds")

    runs = work / "results/runs/tiny_imagenet"
    targets = ["imagenet", *SHIFTS, *GROUPS, *ZEROSHOT]
    for method in ("zeroshot", "flyp", "wiseft"):
        assert sorted(p.stem for p in (runs / method / "seed0/eval").glob("*.json")) == sorted(targets)
    rec = {t: json.loads((runs / "flyp/seed0/eval" / f"{t}.json").read_text()) for t in targets}
    assert rec["imagenet"]["role"] == "id" and list(rec["imagenet"]["splits"]) == ["val"]
    assert {rec[t]["role"] for t in SHIFTS} == {"shift"} and {rec[t]["role"] for t in ZEROSHOT} == {"zeroshot"}
    # the fine-tuned run is scored zero-shot with its own text encoder on every target
    assert {r["head"] for r in rec.values()} == {"zeroshot"}
    assert rec["imagenet"]["checkpoint"].endswith("flyp/seed0/checkpoint.pt")
    # group-shift targets have group metrics over their four groups; the others accuracy only
    for t in GROUPS:
        test = rec[t]["splits"]["test"]
        assert len(test["group_accuracy"]) == 4 and test["worst_group"] == pytest.approx(
            min(a for a in test["group_accuracy"] if a is not None))
    assert "worst_group" not in rec["sun397"]["splits"]["test"]
    # ObjectNet's labels are its own classes (the tree maps three), scored through the ImageNet head
    assert rec["objectnet"]["label_names"] == ["alarm clock", "banana", "chair"]
    assert len(rec["objectnet"]["classnames"]) == 1000

    out = work / "results/tiny_imagenet"
    domain = pd.read_csv(out / "table_domain_shift.csv", index_col=0, dtype=str)
    assert list(domain.index) == ["zeroshot", "flyp", "wiseft"]
    accs = [rec[t]["splits"]["test"]["accuracy"] for t in SHIFTS]
    assert domain.loc["flyp", "Shift mean"].startswith(f"{sum(accs) / len(accs):.1f}")
    zeroshot = pd.read_csv(out / "table_zeroshot.csv", index_col=0)
    assert domain.shape[0] == zeroshot.shape[0]
    for t in GROUPS:
        assert (out / f"table_group_shift_{t}.csv").is_file() and (out / f"table_group_shift_{t}.tex").is_file()
    assert (out / "id_vs_shift.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "last epoch" in report

    # a change of the targets re-evaluates every run and retrains none
    cfg = protocol_config(roots, model)
    cfg["experiments"]["tiny_imagenet"]["evaluate"]["zeroshot"] = ZEROSHOT[:-1]
    (work / "override.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(work, "-n", "results/tiny_imagenet").stdout
    jobs = sorted(re.findall(r"^\s*(?:local)?rule (\w+):", dry, flags=re.MULTILINE))
    assert jobs == ["evaluate"] * 3 + ["report"], dry[-3000:]
    # the composite report holds only the Waterbirds section of the same runs (nothing retrained)
    assert (work / "results/tiny_waterbirds/table_group_shift_waterbirds.csv").is_file()
    assert not list((work / "results/tiny_waterbirds").glob("*domain_shift*"))


def test_paper_targets_list_their_dags_and_stop_at_once_without_data(tmp_path):
    work = make_workdir(tmp_path, REDUCED)
    for target in ("results/imagenet", "results/waterbirds"):
        dry = snakemake(work, "-n", target)
        for rule in ("check_data", "describe", "embed", "finetune", "evaluate", "report"):
            assert f"rule {rule}:" in dry.stdout or f"localrule {rule}:" in dry.stdout, (target, rule)
    # the synthetic protocol is the same kind of DAG, with its world written by rules
    dry = snakemake(work, "-n", "results/synthworld").stdout
    for rule in ("synth_source", "synth_world", "pretrain", "finetune", "evaluate"):
        assert f"rule {rule}:" in dry, rule
    assert "results/runs/synthworld/starft/seed2/eval" in dry
    dry = snakemake(work, "-n", "-p", "results/imagenet").stdout
    # fine-tuned once on ImageNet, every run evaluated (one job per run) on the 12 data sets
    command = next(line for line in dry.splitlines()
                   if "stages.evaluate" in line and "--out-dir results/runs/imagenet/starft/seed2/eval" in line)
    for target in ("imagenet", "objectnet", "waterbirds", "celeba", "sun397"):
        assert f'"data_check": "data/{target}/data_check.json"' in command, target
    proc = snakemake(work, "data/imagenet/data_check.json", check=False)
    assert proc.returncode != 0
    assert "data/imagenet/train not found: put ILSVRC-2012's train/ folder" in proc.stderr
    assert not (work / "data/imagenet/data_check.json").exists()


def checked_datasets(dry: str) -> set[str]:
    """The data sets whose data check a `snakemake -n` lists."""
    return set(re.findall(r"^\s*output: data/(\w+)/data_check\.json$", dry, flags=re.MULTILINE))


def evaluate_commands(dry: str) -> dict[str, str]:
    """{eval folder: its `python -m stages.evaluate` command} of a `snakemake -n -p`."""
    return {re.search(r"--out-dir (\S+)", line).group(1): line for line in dry.splitlines()
            if "python -m stages.evaluate" in line}


def test_a_report_asks_only_for_the_data_sets_it_shows(tmp_path):
    """results/waterbirds (the ImageNet runs on Waterbirds, and the in-task section) with only ImageNet
    and Waterbirds on disk: its DAG checks those two and nothing else, its data checks pass, and the
    ImageNet runs are scored on Waterbirds only (results/imagenet's one job per run on all twelve is
    test_paper_targets_...'s); the demo still evaluates every target of its source experiment."""
    roots = {"imagenet": write_imagenet(tmp_path / "trees/imagenet"),
             "waterbirds": write_waterbirds(tmp_path / "trees/waterbirds")}
    (tmp_path / "work").mkdir()
    work = make_workdir(tmp_path / "work", {**REDUCED, "datasets": {
        **REDUCED["datasets"], **{name: {"root": str(root)} for name, root in roots.items()}}})
    dry = snakemake(work, "-n", "-p", "results/waterbirds").stdout
    assert checked_datasets(dry) == {"imagenet", "waterbirds"}, dry[-3000:]
    commands = evaluate_commands(dry)
    imagenet_runs = {f for f in commands if f.startswith("results/runs/imagenet/")}
    assert "results/runs/imagenet/starft/seed2/eval_waterbirds" in imagenet_runs
    assert "results/runs/waterbirds_intask/starft/seed2/eval" in commands
    for folder in imagenet_runs:
        assert folder.endswith("/eval_waterbirds"), folder
        assert re.findall(r'"data_check": "([^"]+)"', commands[folder]) == ["data/waterbirds/data_check.json"]
    # what the DAG asks for is there: the two data checks run and pass (the other ten are absent)
    # (`--until check_data` would say it, but Snakemake 9.27 stops it with "BUG: Out of jobs ready")
    snakemake(work, *(f"data/{d}/data_check.json" for d in sorted(checked_datasets(dry))))
    assert sorted(p.parent.name for p in (work / "data").glob("*/data_check.json")) == ["imagenet", "waterbirds"]

    # the demo: every run of the source experiment evaluated on its seven targets in one job, and
    # every synthetic data set checked
    dry = snakemake(work, "-n", "-p", "results/synthbirds").stdout
    assert checked_datasets(dry) == {"synthbirds", "synthsource", "synth_v2", "synth_sketch", "synth_rendition",
                                     "synth_hard", "synth_scenes"}
    commands = evaluate_commands(dry)
    assert all(f.endswith("/eval") for f in commands)
    targets = re.findall(r'"target": "(\w+)"', commands["results/runs/synthworld/wiseft/seed2/eval"])
    assert targets == ["synthsource", "synth_v2", "synth_sketch", "synth_rendition", "synth_hard", "synthbirds",
                       "synth_scenes"]
