"""README "Your own data", followed as written on a generated ImageFolder tree: the example config
is config/custom.yaml, the commands are the README's, and the run ends in a report whose classes
are the tree's folders. Only what this machine cannot fetch is overridden (override.yaml): the
model (a tiny open_clip CLIP instead of ViT-B/16), the pools (the file backend instead of the
LLM) and the recipe's size."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline import REPO, make_workdir
from stages.toys import make_tiny_clip
from tests import trees

CLASSES = ("blue_jay", "owl", "swan")


def readme_section() -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index("## Your own data"):text.index("## Spurious caption pools")]


def readme_commands() -> list[list[str]]:
    [bash] = re.findall(r"```bash\n(.*?)```", readme_section(), flags=re.S)
    return [shlex.split(line) for line in bash.splitlines() if line.strip()]


def test_the_readme_shows_the_example_config_as_it_ships():
    [shown] = [block for block in re.findall(r"```yaml\n(.*?)```", readme_section(), flags=re.S)
               if "experiments:" in block]
    assert shown == (REPO / "config/custom.yaml").read_text()
    assert readme_commands() == [
        ["snakemake", "-n", "results/custom", "--configfile", "config/custom.yaml"],
        ["snakemake", "--cores", "4", "results/custom", "--configfile", "config/custom.yaml"]]


def run(work: Path, command: list[str]) -> subprocess.CompletedProcess:
    # the README's command, with the machine's overrides as one more config file (--configfile is last)
    assert command[0] == "snakemake" and command[-2:] == ["--configfile", "config/custom.yaml"]
    cmd = [sys.executable, "-m", *command, "override.yaml"]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
def test_a_fresh_clone_fine_tunes_on_its_own_imagefolder_tree_by_the_readme(tmp_path):
    work = make_workdir(tmp_path, {})
    trees.write_imagefolder(work / "data/custom", classes=CLASSES, n={"train": 4, "val": 2, "test": 2})
    (work / "pools.txt").write_text("a photo of a {} in the forest.\na photo of a {} on a beach.\n"
                                    "a blurry photo of a {}.\n")
    override = {
        "experiments": {"custom": {
            "model": {"name": make_tiny_clip(work / "clip")},
            "describe": {"backend": "file", "types": ["background"], "files": {"background": "pools.txt"},
                         "min_pool": 2},
            "evaluate": {"device": "cpu", "batch_size": 16, "num_workers": 0},
            "finetune": {"methods": ["zeroshot", "starft"], "seeds": [0], "epochs": 1, "batch_size": 4,
                         "warmup_steps": 1, "lr": 1e-4, "device": "cpu", "num_workers": 0, "threads": 1}}}}
    (work / "override.yaml").write_text(yaml.safe_dump(override))
    dry, real = readme_commands()
    # (a class-name list in another order than the folders is refused by the data check, the
    # first job: tests/test_data_check.py)
    planned = run(work, dry)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "report" in planned.stdout and "finetune" in planned.stdout
    done = run(work, real)
    assert done.returncode == 0, done.stderr[-5000:]

    # the classes are the tree's folders, "_" read as a space, in label order
    record = json.loads((work / "results/runs/custom/starft/seed0/eval/custom.json").read_text())
    assert record["classnames"] == ["blue jay", "owl", "swan"] and list(record["splits"]) == ["test"]
    assert record["splits"]["test"]["n"] == 3 * 2
    check = json.loads((work / "data/custom/data_check.json").read_text())
    assert check["classnames"] == record["classnames"]
    table = pd.read_csv(work / "results/custom/table_id.csv", index_col=0)
    assert list(table.index) == ["zeroshot", "starft"]
    assert (work / "results/runs/custom/starft/seed0/train_log.csv").exists()
    assert "## custom" in (work / "results/custom/report.md").read_text()
