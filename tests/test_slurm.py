"""The repository's SLURM profile against a real single-node SLURM.

workflow/scripts/slurm_single_node.sh installs slurm-wlm + munge from Debian if missing and starts
munged, slurmctld and slurmd (2 fake GPUs); the reduced synthetic world then runs through
`snakemake --profile workflow/profiles/slurm`, exactly as a user types it, with the partition and
GPU model set in the profile as the README tells a user to. slurmctld keeps finished jobs for
MinJobAge, so every job's request is read back with `scontrol show job` (no accounting database).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pipeline import REDUCED_RUNS, REDUCED_WORLD, REPO, make_workdir

from stages.report.tables import GROUP_METRICS

SCRIPT = REPO / "workflow/scripts/slurm_single_node.sh"
PARTITION, GPU_MODEL = "debug", "fake"  # the script's partition and GPU type
# flyp runs with finetune.processes 2: one SLURM job with 2 (fake) GPUs on one node and torchrun
# inside it (gloo on the CPU, since the GPUs are not real). Smaller than REDUCED where size only
# costs time: each SLURM job here spends ~10 s starting Snakemake twice (sbatch, then srun) on two
# cores, and the DAG is 6 jobs deep.
CONFIG = {
    "datasets": {"synthbirds": {
        "synthetic": {"n_train": 128, "n_val": 32, "n_test": 64, "n_pretrain": 512},
        "pretrain": {**REDUCED_WORLD["pretrain"], "steps": 10, "warmup_steps": 2}}},
    "experiments": {"synthbirds_intask": {
        "describe": {"backend": "file", "pools_of": None, "types": ["background"], "files": {"background": "pool.txt"}, "min_pool": 3},
        "finetune": {**REDUCED_RUNS["finetune"], "methods": ["zeroshot", "flyp"], "seeds": [0], "epochs": 1,
                     "warmup_steps": 1, "processes": 2,
                     "wiseft_of": "ft"}}},   # ft is not run: no WiSE-FT row (the shipped in-task one is of flyp)
}
POOL = """\
# the test's own pool (no LLM): the file backend applies the usual filters
a photo of a {} in the forest.
a photo of a {} on a lake.
a photo of a {} in the snow.
a photo of a {} in a city street.
"""


def _unavailable(why: str):
    """CI must run this test: there a missing piece is a failure, locally a skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
def slurm_cluster(tmp_path_factory):
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        _unavailable("snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'")
    if shutil.which("slurmctld") is None and (os.geteuid() != 0 or shutil.which("apt-get") is None):
        _unavailable("SLURM is not installed and this is no Debian machine where we are root to install it")
    if os.geteuid() != 0:
        _unavailable(f"{SCRIPT.name} runs the SLURM daemons as root")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_SINGLE_NODE_DIR": str(state)}
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=900)
        assert start.returncode == 0, f"{SCRIPT.name} start failed:\n{start.stderr[-5000:]}"
        conf = re.fullmatch(r"export SLURM_CONF=(\S+)\n", start.stdout)
        assert conf, f"start printed {start.stdout!r}, not one `export SLURM_CONF=...` line"
        yield {**os.environ, "SLURM_CONF": conf.group(1)}
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, f"{SCRIPT.name} stop failed:\n{stop.stderr[-3000:]}"


def slurm_jobs(env) -> dict[str, dict]:
    """Every job slurmctld still knows (finished ones for MinJobAge), by id: `scontrol -d show job -o`
    fields, one job a line (none of the values read here contains a space)."""
    out = subprocess.run(["scontrol", "-d", "show", "job", "-o"], env=env, capture_output=True, text=True,
                         check=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\S+?)=(\S*)", line))
        jobs[fields["JobId"]] = fields
    return jobs


def planned_finetune(work: Path, experiment: str, method: str):
    """The request stages.plan computes for a finetune job of the work folder's configuration, merged
    as the Snakefile merges it (its two configfiles, then --configfile override.yaml)."""
    from stages import config as stage_config
    from stages.plan import resources as plan

    full = stage_config.load(work / "config/synthbirds.yaml", work / "config/paper.yaml", work / "override.yaml")
    return plan.finetune(full, stage_config.train_job(full, experiment), method)


def megabytes(size: str) -> float:
    """scontrol's memory sizes ("16000M", "62.50G") in MB."""
    number, unit = re.fullmatch(r"([\d.]+)([MGT])", size).groups()
    return float(number) * {"M": 1, "G": 1024, "T": 1024**2}[unit]


@pytest.mark.slow
def test_synthbirds_through_the_slurm_profile(slurm_cluster, tmp_path):
    t0 = time.monotonic()
    work = make_workdir(tmp_path, CONFIG)
    (work / "pool.txt").write_text(POOL)
    profile = work / "workflow/profiles/slurm/config.yaml"
    cfg = yaml.safe_load(profile.read_text())
    assert cfg["executor"] == "slurm"
    # the edits the README asks of a user: the partition, and a GPU model where one matters (this
    # cluster has no accounting, and the plugin then submits without an account)
    cfg["default-resources"]["slurm_partition"] = PARTITION
    cfg["set-resources"]["finetune"]["gpu_model"] = GPU_MODEL
    profile.write_text(yaml.safe_dump(cfg))

    # Plugin options a user may give too: the first status check after 2 s instead of 40 s keeps
    # the test short (MinJobAge stays far above 3x it, so the plugin keeps squeue), and the job logs
    # are kept to read the jobs' environment.
    cmd = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm", "results/synthbirds_intask",
           "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs", "--verbose",
           "--configfile", "override.yaml"]
    try:
        proc = subprocess.run(cmd, cwd=work, env=slurm_cluster, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        # e.g. a status command that never sees the jobs end: Snakemake then waits forever
        # always bytes, whatever text= says
        out = b"".join(x or b"" for x in (e.stdout, e.stderr)).decode(errors="replace")
        lines = list(dict.fromkeys(out.splitlines()))  # the status loop repeats itself for minutes
        pytest.fail(f"{' '.join(cmd)} did not finish in 600 s (it takes ~200 s):\n" + "\n".join(lines)[-6000:])
    output = proc.stdout + proc.stderr
    sbatch_calls = re.findall(r"sbatch call: (.*)", output)
    if proc.returncode != 0:
        log_files = sorted([*(work / "logs").rglob("*.log"), *(work / ".snakemake/slurm_logs").rglob("*.log")])
        logs = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in log_files)
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-6000:]}\n{logs}")
    print(f"snakemake through SLURM took {time.monotonic() - t0:.0f} s; sbatch calls:\n" + "\n".join(sbatch_calls))

    # every job went through SLURM, none ran on the submitting process
    jobs = slurm_jobs(slurm_cluster)
    by_rule: dict[str, list[dict]] = {}
    for job in jobs.values():
        rule = re.match(r"rule_([a-z_0-9]+?)(?:_wildcards_|$)", job["Comment"]).group(1)
        by_rule.setdefault(rule, []).append(job)
    expected = {"synth_world": 1, "check_data": 1, "pretrain": 1, "describe": 1, "embed": 1, "finetune": 1,
                "evaluate": 2, "report": 1}
    assert {r: len(j) for r, j in by_rule.items()} == expected, sbatch_calls
    assert all(j["JobState"] == "COMPLETED" for j in jobs.values()), jobs
    for job in sorted(jobs.values(), key=lambda j: int(j["JobId"])):
        print(f"job {job['JobId']} {job['Comment']}: submitted {job['SubmitTime'][11:]}, ran {job['RunTime']}")

    # GPUs only through resources: the 2-process run asked for 2 GPUs on one node, and only it
    (finetune,) = by_rule["finetune"]
    assert finetune.get("TresPerJob") == f"gres:gpu:{GPU_MODEL}:2", finetune
    assert finetune["JOB_GRES"] == f"gpu:{GPU_MODEL}:2", finetune
    assert finetune["NumNodes"] == "1", finetune
    for rule, rule_jobs in by_rule.items():
        if rule != "finetune":
            assert all("TresPerJob" not in j and j["JOB_GRES"] == "(null)" for j in rule_jobs), (rule, rule_jobs)
    assert not any("--gres" in call for call in sbatch_calls), sbatch_calls
    # ... and the job saw them, as on a real cluster (the job step logs its environment at --verbose)
    (job_log,) = (work / ".snakemake/slurm_logs/rule_finetune").rglob(f"{finetune['JobId']}.log")
    job_env = job_log.read_text()
    assert re.search(rf"'SLURM_GPUS': '({GPU_MODEL}:)?2'", job_env), job_env[-3000:]
    assert "'CUDA_VISIBLE_DEVICES': '0,1'" in job_env, job_env[-3000:]
    # the computed request reached SLURM (stages.plan.resources, from the run's own configuration):
    # processes x (loader workers + 1) CPUs, its memory and wall time
    want = planned_finetune(work, "synthbirds_intask", "flyp")
    assert want.gpus == 2, want
    assert finetune["NumCPUs"] == str(want.cpus), (finetune, want)
    assert megabytes(finetune["MinMemoryNode"]) == want.mem_mb, (finetune, want)
    hours, minutes = divmod(want.runtime_min, 60)
    assert finetune["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00", (finetune, want)  # runtime in minutes

    # the same report as a local run
    out = work / "results/synthbirds_intask"
    table = pd.read_csv(out / "table_group_shift_synthbirds.csv", index_col=0)
    assert list(table.index) == ["zeroshot", "flyp"] and (table["Seeds"] == 1).all()
    # the threshold-free companions stand beside the raw worst group (two classes: all of them)
    assert list(table.columns[:len(GROUP_METRICS)]) == list(GROUP_METRICS.values())
    report = (out / "report.md").read_text()
    assert all(re.search(rf"^\| {m} ", report, flags=re.M) for m in table.index), report


# SLURM's shortest time limit is 1 minute, enforced by slurmctld every ~30 s, so a job may run
# ~90 s. The cut run lasts CUT_SECONDS of training, so that the limit cuts it at least once, in
# epochs short enough that every attempt finishes some: an attempt after a cut must resume from
# the last epoch's resume.pt, not start over. Its epoch count follows from the median epoch of a
# local run on this machine (CI's CPU differs; the median, as one slow epoch would make the run
# too short to be cut), and enough retries cover a machine several times slower under SLURM.
CUT_SECONDS = 120


def cut_config(epochs: int) -> dict:
    return {
        "datasets": {"synthbirds": {
            "synthetic": {"n_train": 128, "n_val": 32, "n_test": 64, "n_pretrain": 512},
            "pretrain": {**REDUCED_WORLD["pretrain"], "steps": 10, "warmup_steps": 2}}},
        "experiments": {"synthbirds_intask": {
            "describe": {"backend": "file", "pools_of": None, "types": ["background"],
                         "files": {"background": "pool.txt"}, "min_pool": 3},
            "finetune": {**REDUCED_RUNS["finetune"], "methods": ["flyp"], "seeds": [0], "epochs": epochs,
                         "batch_size": 16, "warmup_steps": 1, "log_every": 1, "wiseft_of": "flyp"}}},
    }


def snakemake(work: Path, *args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args, "--configfile", "override.yaml"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=timeout)


# long: ~10 minutes, most of them waiting for SLURM to cut, requeue and restart the job
@pytest.mark.long
def test_a_run_cut_by_its_time_limit_finishes_on_retry_from_its_last_epoch(slurm_cluster, tmp_path):
    work = make_workdir(tmp_path, cut_config(epochs=3))
    (work / "pool.txt").write_text(POOL)
    run = work / "results/runs/synthbirds_intask/flyp/seed0"
    target = str(run.relative_to(work) / "checkpoint.pt")
    # What the run reads is built here (the cut is about the fine-tuning job alone); then a local
    # 4-epoch run times an epoch (the stage prints each epoch's wall time).
    local = snakemake(work, "--cores", "2", "data/synthbirds_intask/embeddings/teacher_text.parquet",
                      "data/synthbirds/data_check.json")
    assert local.returncode == 0, (local.stdout + local.stderr)[-4000:]
    (work / "override.yaml").write_text(yaml.safe_dump(cut_config(epochs=4)))
    local = snakemake(work, "--cores", "2", target)
    assert local.returncode == 0, (local.stdout + local.stderr)[-4000:]
    seconds = re.findall(r"epoch \d+/4: .*\(([\d.]+) s\)$", (work / "logs/synthbirds_intask/finetune_flyp_seed0.log")
                         .read_text(), flags=re.M)
    assert len(seconds) == 4, seconds
    epoch_seconds = max(float(np.median([float(x) for x in seconds])), 0.01)
    print(f"epochs of the local run: {seconds} s", flush=True)
    epochs = max(10, round(CUT_SECONDS / epoch_seconds))
    (work / "override.yaml").write_text(yaml.safe_dump(cut_config(epochs)))

    profile = work / "workflow/profiles/slurm/config.yaml"
    cfg = yaml.safe_load(profile.read_text())
    cfg["default-resources"]["slurm_partition"] = PARTITION
    profile.write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    proc = snakemake(work, "--profile", "workflow/profiles/slurm", target, "--slurm-init-seconds-before-status-checks",
                     "2", "--set-resources", "finetune:runtime=1", "--retries", "10",
                     # as many threads as the local run that timed the epoch (the computed request would
                     # oversubscribe this machine's cores and stretch every epoch)
                     "--set-threads", "finetune=2", env=slurm_cluster, timeout=2400)
    log = work / "logs/synthbirds_intask/finetune_flyp_seed0.log"
    assert proc.returncode == 0, ((proc.stdout + proc.stderr)[-5000:]
                                  + (f"\n--- {log}\n{log.read_text()[-3000:]}" if log.exists() else ""))
    print(f"{epochs} epochs of {epoch_seconds:.1f} s took {time.monotonic() - t0:.0f} s through SLURM")

    attempts = sorted((j for j in slurm_jobs(slurm_cluster).values() if j["Comment"].startswith("rule_finetune")),
                      key=lambda j: int(j["JobId"]))
    states = [j["JobState"] for j in attempts]
    print("attempts:", [(j["JobId"], j["JobState"], j["RunTime"], j["TimeLimit"]) for j in attempts])
    assert all(j["TimeLimit"] == "00:01:00" for j in attempts), attempts
    assert states[-1] == "COMPLETED" and "TIMEOUT" in states[:-1], states
    # the last attempt resumed from a finished epoch instead of starting over (from the last one
    # when SLURM marked an attempt that had finished its training TIMEOUT: RunTime over the limit) ...
    resumed = re.findall(rf"resuming flyp seed 0 from \S+resume.pt \(epoch (\d+)/{epochs}\)", log.read_text())
    assert resumed and 0 < int(resumed[-1]) <= epochs, log.read_text()[-3000:]
    # ... and the run trained every epoch exactly once, its steps in order, none redone
    ft = pd.read_csv(run / "train_log.csv").query("phase == 'ft'")
    steps_per_epoch = ft.groupby("epoch")["step"].count()
    assert list(steps_per_epoch.index) == list(range(epochs)), steps_per_epoch
    assert steps_per_epoch.nunique() == 1, steps_per_epoch
    assert ft["step"].is_monotonic_increasing and ft["step"].is_unique
    assert not (run / "resume.pt").exists()
