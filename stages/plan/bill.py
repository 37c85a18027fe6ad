"""The bill of a target before submitting it: per job and in total, GPU-hours, CPU-hours, peak
memory and disk written, and the downloads its data sets and model need.

The jobs are Snakemake's own (`snakemake -n` of the targets: only what is left to do), each priced
by the same requests the rules ask SLURM for (stages.plan.resources): hours are the expected
work, before the time margin, times the GPUs or CPUs held. Jobs the plan does not size (data
checks, pools, reports) are priced by the stated estimates of FIXED.
"""

from __future__ import annotations

import re

import pandas as pd

from .. import config as stage_config
from . import model_size
from . import resources as plan

GB = 1e9
# The jobs the plan does not size from their work: (GPUs, CPUs, hours, memory GB), estimates.
FIXED = {
    "check_data": (0, 1, 0.1, 2), "report": (0, 1, 0.1, 4), "report_table": (0, 1, 0.0, 1),
    "synth_world": (0, 1, 0.1, 8), "synth_source": (0, 1, 0.1, 8), "oracle_pools": (0, 1, 0.01, 1),
    "pretrain": (0, 8, 0.3, 16), "fetch_smollm2": (0, 1, 0.05, 2), "convert_smollm2": (0, 1, 0.05, 2),
    "prepare_data": (0, 1, 1.0, 4), "prepare_data_all": (0, 1, 0.0, 1), "resize_split": (0, 16, 1.0, 16),
    "export": (0, 1, 0.1, 8), "export_experiment": (0, 1, 0.0, 1),
}
# describe: a 7B model's three pools take minutes on a GPU (profile comment); SmolLM2 on 2 cores ~15 min
DESCRIBE_HOURS = 0.5
# ImageNet's three archives, fetched by hand (a login): their sizes as tensorflow-datasets'
# imagenet2012 records them
IMAGENET_ARCHIVES = {"ILSVRC2012_img_train.tar": 147_897_477_120, "ILSVRC2012_img_val.tar": 6_744_924_160,
                     "ILSVRC2012_devkit_t12.tar.gz": 2_568_145}


def parse_dry_run(text: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job `snakemake -n` prints."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", "\n" + text):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            wild = re.search(r"^\s+wildcards: (.*)$", block, flags=re.M)
            jobs.append((rule[1], dict(re.findall(r"(\w+)=([^,\s]+)", wild[1])) if wild else {}))
    return jobs


def _checkpoint_bytes(config: dict, experiment: str) -> int:
    params, _, _ = plan._model(config, config["experiments"][experiment])
    return params * 4   # fp32 state dict (resume.pt, Adam's moments beside it, is removed at the end)


def job_cost(config: dict, rule: str, wildcards: dict) -> dict:
    """One job's row: what it holds (GPUs, CPUs, memory GB) and for how long, what it writes."""
    name = rule + "".join(f" {v}" for v in wildcards.values())
    row = {"job": name, "rule": rule, "gpus": 0, "cpus": 1, "hours": 0.0, "mem_gb": 0.0, "disk_gb": 0.0}
    exp = wildcards.get("experiment")
    if rule in ("finetune", "probe", "embed", "evaluate", "evaluate_targets"):
        job = stage_config.train_job(config, exp)
        if rule == "finetune":
            req = plan.finetune(config, job, wildcards["method"])
            row["disk_gb"] = _checkpoint_bytes(config, exp) / GB
        elif rule == "probe":
            req = plan.probe(config, job)
            n = plan.split_images(config["datasets"][job["data"]["dataset"]], job["finetune"]["train_split"]) or 0
            row["disk_gb"] = plan.feature_bytes(config, config["experiments"][exp], n) / GB
        elif rule == "embed":
            req = plan.embed(config, job)
        else:
            roles = stage_config.target_roles(config["experiments"][exp])
            targets = wildcards["targets"].split("+") if "targets" in wildcards else list(roles)
            req = plan.evaluate(config, exp, wildcards["method"], targets)
        row.update(gpus=req.gpus, cpus=req.cpus, hours=req.work_s / 3600, mem_gb=req.mem_mb / 1000)
    elif rule == "describe":
        from ..describe import checks as describe_checks

        section = stage_config.train_job(config, exp)["describe"]
        # vLLM loads a 7B model through host memory (~15 GB in bf16; the profile asks 64 GB)
        mem = 64.0 if section["backend"] == "vllm" else 8.0
        row.update(gpus=describe_checks.gpus(section), cpus=section["threads"], hours=DESCRIBE_HOURS, mem_gb=mem)
    elif rule in FIXED:
        gpus, cpus, hours, mem = FIXED[rule]
        row.update(gpus=gpus, cpus=cpus, hours=hours, mem_gb=float(mem))
        if rule == "prepare_data":
            row["disk_gb"] = downloads(config, [wildcards["dataset"]])["bytes"].sum() / GB
    row["gpu_hours"] = row["gpus"] * row["hours"]
    row["cpu_hours"] = row["cpus"] * row["hours"]
    return row


def downloads(config: dict, datasets: list[str]) -> pd.DataFrame:
    """What each data set's root needs fetched (its `prepare` files' pinned sizes; ImageNet's
    archives by hand), one row per data set; bytes NaN where no size is pinned (hub mirrors,
    unchecked files)."""
    rows = []
    for name in datasets:
        d = config["datasets"][name]
        spec = d.get("prepare") or {}
        if "archives" in spec or d["reader"] == "imagenet":
            size, how = sum(IMAGENET_ARCHIVES.values()), "by hand (image-net.org login)"
        elif "files" in spec:
            sizes = [f.get("size") for f in spec["files"]]
            size = float("nan") if None in sizes else sum(sizes)
            how = "prepare: files" + (" (a size unpinned)" if None in sizes else "")
        elif "hub" in spec:
            size, how = float("nan"), f"prepare: hub {spec['hub']['repo']} (size not pinned)"
        elif "synthetic" in d or "source" in d or d["root"] in stage_config.generated_roots(config):
            size, how = 0, "generated by its rule"
        else:
            size, how = float("nan"), "by hand"
        rows.append({"download": name, "bytes": size, "how": how})
    return pd.DataFrame(rows, columns=["download", "bytes", "how"])


def weights(config: dict, experiments: list[str]) -> pd.DataFrame:
    """The CLIP weights each model fetches once: parameters x 4 bytes (fp32; OpenAI's files are
    fp16, half of it); nothing for the synthetic world's tiny CLIP, built by the pretrain rule."""
    rows = {}
    for exp in experiments:
        e = config["experiments"][exp]
        if stage_config.synthetic_teacher(config, e) is None:
            size = model_size.size(e["model"]["name"])
            label = f"{e['model']['name']} {e['model']['pretrained'] or ''}".strip()
            rows[label] = {"download": label, "bytes": size["params"] * 4 if size else float("nan"),
                           "how": "open_clip (model weights)"}
    return pd.DataFrame(list(rows.values()), columns=["download", "bytes", "how"])


def bill(config: dict, jobs: list[tuple[str, dict]]) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """(per-job table, totals, downloads) of the (rule, wildcards) jobs."""
    table = pd.DataFrame([job_cost(config, rule, w) for rule, w in jobs],
                         columns=["job", "rule", "gpus", "cpus", "hours", "mem_gb", "disk_gb", "gpu_hours",
                                  "cpu_hours"])
    datasets = sorted({w["dataset"] for rule, w in jobs if rule == "check_data"})
    experiments = sorted({w["experiment"] for _, w in jobs if "experiment" in w})
    fetched = pd.concat([downloads(config, datasets), weights(config, experiments)], ignore_index=True)
    totals = {"jobs": len(table), "gpu_hours": table["gpu_hours"].sum(), "cpu_hours": table["cpu_hours"].sum(),
              "peak_mem_gb": table["mem_gb"].max() if len(table) else 0.0, "disk_gb": table["disk_gb"].sum(),
              "download_gb": fetched["bytes"].sum() / GB,
              "downloads_unknown": int(fetched["bytes"].isna().sum())}
    return table, totals, fetched


def by_rule(table: pd.DataFrame) -> pd.DataFrame:
    """The per-job table summed per rule (jobs, GPU-hours, CPU-hours, peak memory, disk)."""
    return table.groupby("rule", sort=False).agg(
        jobs=("job", "size"), gpu_hours=("gpu_hours", "sum"), cpu_hours=("cpu_hours", "sum"),
        peak_mem_gb=("mem_gb", "max"), disk_gb=("disk_gb", "sum"))

