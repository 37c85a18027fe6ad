"""Each job's request computed from its own configuration (stages.plan.resources), refused when no
node of the cluster holds it, and the bill of a target (stages.plan.bill).

Expected numbers are computed here from the stated formulas and rates, on configurations whose
numbers all differ (processes, workers, epochs, batch), so that a swapped factor shows.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from stages import config as stage_config
from stages.finetune.shm import LABEL_BYTES, PREFETCH
from stages.plan import model_size
from stages.plan import resources as plan
from stages.toys import REPO, make_workdir

IMAGENET_TRAIN = 1_281_167
RATE = 700.0   # images/s per GPU, stated in the fixture's cluster section


def config(**finetune) -> dict:
    """One ImageNet experiment with 3 processes x 5 workers (unless `finetune` says otherwise)."""
    ft = {"methods": ["zeroshot", "lp", "flyp", "starft"], "seeds": [0, 1], "epochs": 2, "batch_size": 96,
          "processes": 3, "num_workers": 5, **finetune}
    return stage_config.validate({
        "cluster": {"gpu": "test", "images_per_second": RATE},
        "datasets": {"imagenet": {"reader": "imagenet", "root": "data/imagenet"},
                     "waterbirds": {"reader": "waterbirds", "root": "data/waterbirds"}},
        "experiments": {"x": {"train": "imagenet", "model": {"name": "ViT-B-16-quickgelu", "pretrained": "openai"},
                              "evaluate": {"groups": ["waterbirds"], "num_workers": 7}, "finetune": ft}}})


def finetune_request(cfg: dict, method: str) -> plan.Request:
    return plan.finetune(cfg, stage_config.train_job(cfg, "x"), method)


def test_the_parameter_count_is_open_clips_own():
    """The torch-free count equals the model open_clip builds (on the meta device: no memory)."""
    import open_clip
    import torch

    from stages.synthetic.tiny_config import tiny_clip_config

    tiny = tiny_clip_config({"embed_dim": 48, "width": 64, "layers": 3, "patch_size": 8, "text_layers": 2}, 32)
    with torch.device("meta"):
        built = open_clip.CLIP(**tiny)
    assert model_size.size_of(tiny)["params"] == sum(p.numel() for p in built.parameters())
    assert model_size.size("ViT-B-16-quickgelu")["params"] == model_size._meta_params("ViT-B-16-quickgelu")
    assert model_size.size("ViT-B-16")["work"] == 1.0
    assert 4 < model_size.size("ViT-L-14")["work"] < 5   # 24 blocks of width 1024 on 257 tokens


def test_a_run_asks_processes_x_workers_plus_one_cpus_and_its_gpus():
    cfg = config()
    flyp = finetune_request(cfg, "flyp")
    assert (flyp.gpus, flyp.cpus) == (3, 3 * (5 + 1))
    assert finetune_request(config(processes=2, num_workers=11), "starft").cpus == 2 * 12
    assert finetune_request(config(threads=7), "flyp").cpus == 7   # stated threads win
    # lp trains no weights (the probe job fits its head): no GPU, one CPU
    lp = finetune_request(cfg, "lp")
    assert (lp.gpus, lp.cpus) == (0, 1)
    # on the CPU the run computes on every core a node has (capped by --cores on one machine)
    assert (finetune_request(config(device="cpu"), "flyp").gpus, finetune_request(config(device="cpu"), "flyp").cpus) \
        == (0, 96)


def test_a_runs_time_is_its_work_over_the_stated_rate():
    cfg = config()
    work = plan.STARTUP_S + IMAGENET_TRAIN * 2 / (RATE * 3)
    flyp = finetune_request(cfg, "flyp")
    assert flyp.work_s == pytest.approx(work)
    assert flyp.runtime_min == math.ceil(work * 1.5 / 60)   # cluster.time_margin's default
    starft = finetune_request(cfg, "starft")
    assert starft.work_s == pytest.approx(plan.STARTUP_S + IMAGENET_TRAIN * 2 * plan.REGULARIZER_COST / (RATE * 3))
    # the measured H200 rate where the cluster states none
    h200 = stage_config.validate({**cfg, "cluster": {"gpu": "h200"}})
    assert plan.finetune(h200, stage_config.train_job(h200, "x"), "flyp").work_s == pytest.approx(
        plan.STARTUP_S + IMAGENET_TRAIN * 2 / (1600 * 3))


def test_a_runs_memory_counts_its_processes_workers_and_shared_memory():
    cfg = config()
    params = model_size.size("ViT-B-16-quickgelu")["params"]
    batch_bytes = 96 // 3 * (3 * 224 * 224 + LABEL_BYTES)
    shm = 3 * (5 * PREFETCH + 1) * batch_bytes
    need = 3 * (plan.PROCESS_BYTES + params * 4 * 2 + 5 * plan.WORKER_BYTES) + shm
    assert finetune_request(cfg, "flyp").mem_mb == math.ceil(need * plan.MEM_MARGIN / 1e9) * 1000
    assert finetune_request(config(num_workers=9), "flyp").mem_mb > finetune_request(cfg, "flyp").mem_mb


def test_a_request_larger_than_a_node_is_refused_naming_both_numbers_and_the_key():
    with pytest.raises(plan.ResourceError, match=r"experiments\.x\.finetune\.processes: .* 9 GPUs, more than the 8 "
                                                 r".*cluster\.gpus_per_node"):
        plan.check_experiment(config(processes=9), stage_config.train_job(config(processes=9), "x"))
    big = config(processes=8, num_workers=12)
    with pytest.raises(plan.ResourceError, match=r"experiments\.x\.finetune\.num_workers: .* 104 CPUs .* 96 cores "
                                                 r".*cluster\.cores_per_node"):
        plan.check_experiment(big, stage_config.train_job(big, "x"))
    plan.check_experiment(config(), stage_config.train_job(config(), "x"))   # 18 CPUs, 3 GPUs: fits
    with pytest.raises(plan.ResourceError, match="cluster.images_per_second"):
        unknown = stage_config.validate({**config(), "cluster": {"gpu": "v100"}})
        plan.finetune(unknown, stage_config.train_job(unknown, "x"), "flyp")


def test_the_evaluation_asks_its_workers_and_one_gpu():
    cfg = config()
    ev = plan.evaluate(cfg, "x", "flyp", ["imagenet", "waterbirds"])
    assert (ev.gpus, ev.cpus) == (1, 7 + 1)
    wiseft = plan.evaluate(cfg, "x", "wiseft", ["imagenet", "waterbirds"])
    assert wiseft.work_s > ev.work_s   # every alpha scored


def dry_run(work, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--profile", "workflow/profiles/slurm",
                           "results/imagenet", *args, "--configfile", "override.yaml"],
                          cwd=work, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def jobs(output: str) -> list[dict]:
    """rule, wildcards, threads and resources of every job a dry run prints."""
    found = []
    for block in re.split(r"\n(?=rule \w+:)", output):
        rule = re.match(r"rule (\w+):", block)
        if not rule:
            continue
        wild = re.search(r"wildcards: (.*)", block)
        threads = re.search(r"threads: (\d+)", block)
        res = re.search(r"resources: (.*)", block)
        found.append({"rule": rule[1], "wildcards": dict(re.findall(r"(\w+)=([^,\s]+)", wild[1])) if wild else {},
                      "threads": int(threads[1]) if threads else 1,
                      "resources": dict(re.findall(r"(\w+)=([^,\s]+)", res[1])) if res else {}})
    return found


def test_the_slurm_dry_run_prints_the_computed_requests(tmp_path):
    """The paper's config through the SLURM profile: each finetune job asks processes x (workers + 1)
    CPUs and its GPUs, lp none; a run too large for a node stops the dry run, naming the key."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    override = {"experiments": {"imagenet": {"finetune": {"processes": 2, "num_workers": 3, "seeds": [0]}}}}
    (tmp_path / "ok").mkdir()
    work = make_workdir(tmp_path / "ok", override)
    proc = dry_run(work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finetunes = {j["wildcards"]["method"]: j for j in jobs(proc.stdout + proc.stderr) if j["rule"] == "finetune"}
    assert finetunes["starft"]["threads"] == 2 * (3 + 1)
    assert finetunes["starft"]["resources"]["gpu"] == "2"
    assert finetunes["lp"]["resources"]["gpu"] == "0"
    full = stage_config.load(work / "config/synthbirds.yaml", work / "config/paper.yaml", work / "override.yaml")
    want = plan.finetune(full, stage_config.train_job(full, "imagenet"), "starft")
    assert int(finetunes["starft"]["resources"]["mem_mb"]) == want.mem_mb
    assert int(finetunes["starft"]["resources"]["runtime"]) == want.runtime_min


def test_a_run_too_large_for_a_node_stops_the_dry_run(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    (tmp_path / "big").mkdir()
    work = make_workdir(tmp_path / "big", {"experiments": {"imagenet": {"finetune": {"processes": 9}}}})
    proc = dry_run(work)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config key experiments.imagenet.finetune.processes" in out and "9 GPUs" in out, out[-2000:]


def test_the_bill_is_the_hand_computed_gpu_hours_and_lp_costs_none():
    from stages.plan.bill import bill

    cfg = config()
    runs = [("finetune", {"experiment": "x", "method": m, "seed": str(s)}) for m in ("lp", "flyp", "starft")
            for s in (0, 1)]
    table, totals, _ = bill(cfg, runs + [("check_data", {"dataset": "imagenet"})])
    per_run = {m: 3 * (plan.STARTUP_S + IMAGENET_TRAIN * 2 * cost / (RATE * 3)) / 3600
               for m, cost in (("flyp", 1.0), ("starft", plan.REGULARIZER_COST))}
    assert totals["gpu_hours"] == pytest.approx(2 * per_run["flyp"] + 2 * per_run["starft"])
    assert table[table["job"].str.startswith("finetune x lp")]["gpu_hours"].tolist() == [0, 0]
    # every trained run writes one fp32 checkpoint
    params = model_size.size("ViT-B-16-quickgelu")["params"]
    assert table[table["rule"] == "finetune"]["disk_gb"].sum() == pytest.approx(6 * params * 4 / 1e9)
    # the probe's float16 features of a 512-d CLIP: README's 1.31 GB for ImageNet
    probe = bill(cfg, [("probe", {"experiment": "x", "probe": "0123456789"})])[0]
    assert probe["disk_gb"].item() == pytest.approx(IMAGENET_TRAIN * 512 * 2 / 1e9) == pytest.approx(1.31, abs=0.01)
    assert probe["gpus"].item() == 1 and probe["cpus"].item() == 5 + 1
    # ImageNet's three archives, and the model's weights once
    assert totals["download_gb"] == pytest.approx((147_897_477_120 + 6_744_924_160 + 2_568_145 + params * 4) / 1e9)


def test_the_dry_run_parser_reads_rules_and_wildcards():
    from stages.plan.bill import parse_dry_run

    text = ("Building DAG of jobs...\nrule finetune:\n    input: a\n    wildcards: experiment=x, method=flyp, seed=1\n"
            "    threads: 13\nlocalrule all:\n    input: b\nrule report:\n    wildcards: name=x\n")
    assert parse_dry_run(text) == [("finetune", {"experiment": "x", "method": "flyp", "seed": "1"}), ("all", {}),
                                   ("report", {"name": "x"})]


def test_gradient_checkpointing_costs_one_more_forward():
    plain, recomputed = finetune_request(config(), "flyp"), finetune_request(config(grad_checkpointing=True), "flyp")
    assert recomputed.work_s - plan.STARTUP_S == pytest.approx((plain.work_s - plan.STARTUP_S) * 4 / 3)


def ft_workers(cfg: dict) -> int:
    from stages.finetune.runs import run_config

    return run_config(cfg["experiments"]["x"]["finetune"], "flyp")["num_workers"]


def test_the_loader_workers_follow_decode_unless_stated():
    """null num_workers: 12 per process with PIL decoding, 2 with device decoding or a CPU run."""
    from stages.finetune.runs import RunConfig, run_config

    unset = {"num_workers": None}
    assert finetune_request(config(**unset), "flyp").cpus == 3 * (12 + 1)
    assert finetune_request(config(**unset, decode="device"), "flyp").cpus == 3 * (2 + 1)
    assert finetune_request(config(**unset, device="cpu", threads=5), "flyp").cpus == 5
    assert ft_workers(config(**unset, device="cpu")) == 2
    # the stage resolves it the same way (its job parameters and its request agree)
    section = config(**unset, decode="device")["experiments"]["x"]["finetune"]
    assert run_config(section, "flyp")["num_workers"] == 2
    assert RunConfig.from_dict({**run_config(section, "flyp"), "num_workers": None, "decode": "cpu"}).num_workers == 12


@pytest.mark.slow   # ~10 s idle, 24 s on the shared machine: Snakemake's dry run of the paper's config
def test_the_bill_command_prints_the_total_of_snakemakes_jobs(tmp_path):
    """`python -m stages.plan` over the dry run of a reduced ImageNet experiment (one seed, two
    methods): its total is the in-process bill of the same jobs."""
    from stages.plan.bill import bill

    override = {"experiments": {"imagenet": {"finetune": {"methods": ["zeroshot", "lp", "starft"], "seeds": [0]}}}}
    (tmp_path / "w").mkdir()
    work = make_workdir(tmp_path / "w", override)
    proc = subprocess.run([sys.executable, "-m", "stages.plan", "results/imagenet", "--configfile", "override.yaml"],
                          cwd=work, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    full = stage_config.load(work / "config/synthbirds.yaml", work / "config/paper.yaml", work / "override.yaml")
    jobs = [("finetune", {"experiment": "imagenet", "method": m, "seed": "0"}) for m in ("lp", "starft")]
    gpu_hours = bill(full, jobs)[1]["gpu_hours"]
    total = re.search(r"total: (\d+) jobs, ([\d.,]+) GPU-hours", proc.stdout)
    # the finetune rows' GPU-hours, plus the evaluations', probe's, embed's and describe's
    finetune_row = re.search(r"^finetune\s+2\s+([\d.]+)", proc.stdout, flags=re.M)
    assert float(finetune_row[1]) == pytest.approx(gpu_hours, abs=0.01), proc.stdout
    # 12 data checks, the teacher's fetch, the pre-flights of the runs and of the describe
    # environment, describe, embed, probe, 2 runs, 3 evaluations (zeroshot, lp, starft), report
    assert int(total[1]) == 12 + 1 + 1 + 1 + 1 + 1 + 1 + 2 + 3 + 1, proc.stdout
