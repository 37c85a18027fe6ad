"""bench/scale.py, the ImageNet-shaped rehearsal, still fits the stages it drives: its tree is read
by the real ImageNet and ImageNet-Sketch readers, its generated config builds the DAG of every
stage it measures, and its growth exponent and extrapolation are the formulas it states. (Its
real sizes take a quarter of an hour: they are the benchmark's, not a test's.)"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "bench" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tree(scale, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    (tmp / "pool").mkdir()
    pool = scale.write_jpegs(tmp / "pool", 3, width=50, height=40)
    counts = scale.write_tree(tmp / "data", 1, pool)
    return tmp, counts


def test_the_tree_is_read_by_the_real_imagenet_readers(tree):
    from stages.datasets.imagenet import open_imagenet, open_sketch, wnids

    tmp, counts = tree
    assert counts == {"train": 1000, "val": 1000, "sketch": 1000}
    for split in ("train", "val"):
        cs = open_imagenet(tmp / "data" / "imagenet", split)
        assert len(cs.dataset) == 1000 and len(cs.classnames) == 1000
        # one image in each wnid folder, labelled by the wnid's index in the sorted list
        assert sorted(cs.dataset.labels.tolist()) == list(range(1000))
    sketch = open_sketch(tmp / "data" / "sketch", "test")
    assert len(sketch.dataset) == 1000
    assert (tmp / "data" / "sketch" / wnids()[-1]).is_dir()


def test_its_config_builds_the_dag_of_every_measured_stage(scale, tree, tmp_path):
    tmp, _ = tree
    (tmp / "data" / "pool.txt").write_text("\n".join(scale.POOL) + "\n")
    # the Snakefile refuses a local-dir: teacher that is not there (the rehearsal writes it first)
    (tmp / "clip").mkdir(exist_ok=True)
    scale.make_workdir(tmp_path, scale.overrides(tmp / "data", f"local-dir:{tmp / 'clip'}", 2, 128))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", f"results/{scale.EXPERIMENT}", "--cores", "2",
                           "--configfile", "override.yaml"], check=False, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = proc.stdout[proc.stdout.index("Job stats"):].split("\n\n")[0].splitlines()[3:]   # job, count rows
    jobs = {rule: int(count) for rule, count in (line.split() for line in stats)}
    # every stage the rehearsal times has a job, and each job's module maps to its stage
    rules = {"check_data", "describe", "embed", "probe", "finetune", "evaluate", "report"}
    assert rules <= set(jobs), jobs
    assert {stage for stage, _ in scale.STAGES} == rules
    assert jobs["probe"] == 1 and jobs["finetune"] == 3 and jobs["check_data"] == 2   # lp, flyp, starft


def test_stage_of_a_job_command(scale):
    assert scale.stage_of(["python", "-m", "stages.finetune.probe_cli", "--out", "x"]) == "probe"
    assert scale.job_name(["python", "-m", "stages.finetune", "--method", "starft", "--seed", "0"]) == "finetune starft"
    assert scale.stage_of(["python", "-m", "stages.datasets", "check"]) == "check_data"
    assert scale.stage_of(["python", "-m", "snakemake"]) is None and scale.stage_of(["python", "x.py"]) is None


def test_exponent_and_extrapolation_are_the_stated_formulas(scale):
    # finetune: 3 s fixed + 1 ms an image -> slope between n=2 and n=4 (2,000 -> 4,000 images) is
    # log(7/5)/log(2), between n=4 and 10 log(13/7)/log(2.5); the extrapolation 3 + 0.001 * 1,281,167 s
    def result(n, wall):
        counts = {"train": 1000 * n, "val": 1000 * n, "sketch": 1000 * n}
        return {"n": n, "counts": counts, "total": 0.0,
                "stages": {"finetune": {"jobs": 3, "wall": wall, "mem": 1 << 20, "shm": 0, "gpu": 0}}}

    text = scale.table([result(2, 5.0), result(4, 7.0), result(10, 13.0)], workers=2)
    row = next(line for line in text.splitlines() if line.startswith("| finetune |")).split("|")
    assert row[7].strip() == f"{math.log(7 / 5) / math.log(2):.2f}, {math.log(13 / 7) / math.log(2.5):.2f}"
    assert row[8].strip() == f"{(3 + 0.001 * scale.FULL_TRAIN) / 3600:.1f} h"
