"""The describe rule in Snakemake's own dry run: one job per experiment writing every type, the
GPUs each backend requests, vLLM's model converted first and its job in the describe environment
(also through the SLURM profile), and describe config errors before any job."""

import copy
import importlib.util
import re

import pytest
import yaml
from pipeline import REDUCED, REDUCED_RUNS, make_workdir, reduced, snakemake

from stages.config import DESCRIBE_PYTHON, SMOLLM2_SAFETENSORS


def dry_run_jobs(stdout: str) -> list[dict]:
    """The jobs of `snakemake -n` output: rule, wildcards, resources and outputs of each."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        fields = dict(re.findall(r"^\s{4}(\w+): (.*)$", block, flags=re.M))
        jobs.append({"rule": head.group(1),
                     "wildcards": dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if kv),
                     "resources": dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if kv),
                     "output": fields.get("output", "").split(", ")})
    return jobs


def write_overrides(work, synthbirds: dict, waterbirds: dict):
    """The reduced synthbirds experiment with `synthbirds` sections, and waterbirds_intask's describe."""
    config = reduced(**synthbirds)
    config["experiments"]["waterbirds_intask"] = waterbirds
    (work / "override.yaml").write_text(yaml.safe_dump(config))


def test_one_describe_job_per_dataset_with_the_gpus_its_backend_uses(tmp_path):
    work = make_workdir(tmp_path, REDUCED)
    synth = {"describe": {**REDUCED_RUNS["describe"], "types": ["background", "texture", "quality"]}}
    write_overrides(work, synth, {"describe": {"tensor_parallel_size": 2}})
    dry = snakemake(work, "-n", "-p", "data/synthbirds_intask/embeddings/teacher_text.parquet", "data/waterbirds_intask/pools")
    describe = [j for j in dry_run_jobs(dry.stdout) if j["rule"] == "describe"]
    assert sorted(j["wildcards"]["experiment"] for j in describe) == ["synthbirds_intask", "waterbirds_intask"], dry.stdout[-3000:]
    by_dataset = {j["wildcards"]["experiment"]: j for j in describe}
    for name, job in by_dataset.items():
        assert job["output"] == [f"data/{name}/pools"]        # every type's files, one folder
    # vLLM with tensor_parallel_size 2 asks for 2 GPUs; SmolLM2 on device auto (the CPU) for none
    assert by_dataset["waterbirds_intask"]["resources"]["gpu"] == "2"
    assert by_dataset["synthbirds_intask"]["resources"]["gpu"] == "0"
    # embed reads each configured type's pool from that folder
    embed = next(j for j in dry_run_jobs(dry.stdout) if j["rule"] == "embed")
    assert "data/synthbirds_intask/pools/quality.descriptions.parquet" in dry.stdout.split("rule embed:")[1]
    assert embed["wildcards"] == {"experiment": "synthbirds_intask"}


def test_datasets_with_different_types_share_one_rule(tmp_path):
    work = make_workdir(tmp_path, REDUCED)  # synthbirds: [background]; waterbirds_intask: three types
    write_overrides(work, {}, {"describe": {"backend": "file", "files": {
        "background": "bg.txt", "texture": "tx.txt", "quality": "q.txt"}}})
    for f in ("bg.txt", "tx.txt", "q.txt"):
        (work / f).write_text("a photo of a {} in the forest.\n")
    dry = snakemake(work, "-n", "-p", "data/synthbirds_intask/pools", "data/waterbirds_intask/pools")
    describe = {j["wildcards"]["experiment"]: j for j in dry_run_jobs(dry.stdout) if j["rule"] == "describe"}
    assert set(describe) == {"synthbirds_intask", "waterbirds_intask"}
    assert "--types background --threads" in dry.stdout
    assert "--types background texture quality --threads" in dry.stdout
    assert describe["waterbirds_intask"]["resources"]["gpu"] == "0"  # the file backend


def test_describe_config_errors_stop_snakemake_before_any_job(tmp_path):
    work = make_workdir(tmp_path, REDUCED)
    write_overrides(work, {"describe": {**REDUCED_RUNS["describe"], "temperature": 0}},
                    {"describe": {"gguf_file": "qwen.gguf"}})
    proc = snakemake(work, "-n", "results/synthbirds_intask", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key experiments.synthbirds_intask.describe.n_samples: temperature 0 is greedy decoding" in out
    assert "config key experiments.waterbirds_intask.describe.gguf_file: backend vllm does not read gguf_file" in out
    assert not (work / "data").exists()


@pytest.mark.slow
def test_the_pools_target_rebuilds_the_pools_when_the_class_names_change(tmp_path):
    """`data/<experiment>/pools` asked for after a change of the class names: the pools are built
    again (an ancient data check among their inputs hid the change: only the check ran)."""
    from stages.describe.output import read_metadata

    describe = {"backend": "file", "types": ["background"], "files": {"background": "bg.txt"}, "min_pool": 2,
                "pools_of": None}
    config = copy.deepcopy(reduced(describe=describe))   # its world is pipeline.REDUCED_WORLD, shared
    work = make_workdir(tmp_path, config)
    (work / "bg.txt").write_text("a photo of a {} in the forest.\na photo of a {} on a beach.\n")
    pools = work / "data/synthbirds_intask/pools/background.descriptions.parquet"
    snakemake(work, "data/synthbirds_intask/pools")
    assert read_metadata(pools)["classnames"] == ["landbird", "waterbird"]
    assert not (work / "data/synthbirds/dataset").exists()   # the pools read no image: no world was built
    config["datasets"]["synthbirds"]["classnames"] = ["land bird", "water bird"]
    (work / "override.yaml").write_text(yaml.safe_dump(config))
    run = snakemake(work, "data/synthbirds_intask/pools")
    assert "rule describe:" in run.stdout + run.stderr
    assert read_metadata(pools)["classnames"] == ["land bird", "water bird"]


def test_vllm_converts_smollm2_first_and_runs_in_the_describe_environment(tmp_path):
    work = make_workdir(tmp_path, REDUCED)
    # waterbirds_intask's describe is vLLM (config/paper.yaml); here on SmolLM2 converted for it
    write_overrides(work, {}, {"describe": {"model": SMOLLM2_SAFETENSORS, "types": ["background"]}})
    dry = snakemake(work, "-n", "-p", "data/waterbirds_intask/pools")
    jobs = {j["rule"]: j for j in dry_run_jobs(dry.stdout)}
    assert {"fetch_smollm2", "convert_smollm2", "describe"} <= set(jobs), dry.stdout[-3000:]
    assert jobs["convert_smollm2"]["output"] == [SMOLLM2_SAFETENSORS]
    shell = dry.stdout.split("rule describe:")[1]
    # the stage's command, with the interpreter it runs itself in: the describe environment
    assert "python -m stages.describe generate --dataset waterbirds_intask" in shell
    assert f'"python": "{DESCRIBE_PYTHON}"' in shell


def test_the_slurm_profile_gives_the_describe_job_what_vllm_needs(tmp_path):
    import subprocess
    import sys

    from pipeline import unavailable

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        unavailable("snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'")
    work = make_workdir(tmp_path, REDUCED)
    write_overrides(work, {}, {"describe": {"types": ["background"], "tensor_parallel_size": 2}})
    # the profile's own settings (pipeline.snakemake's --cores 2 would cap the job's threads)
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--profile", "workflow/profiles/slurm",
                          "data/waterbirds_intask/pools", "--configfile", "override.yaml"], cwd=work,
                         capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stderr[-3000:]
    (describe,) = [j for j in dry_run_jobs(dry.stdout) if j["rule"] == "describe"]
    profile = yaml.safe_load((work / "workflow/profiles/slurm/config.yaml").read_text())
    wanted = profile["set-resources"]["describe"]
    assert describe["resources"]["gpu"] == "2"  # tensor_parallel_size GPUs: sbatch --gpus=2
    assert describe["resources"]["mem_mb"] == str(wanted["mem_mb"]) and describe["resources"]["runtime"] == str(
        wanted["runtime"])
    assert f"--threads {profile['set-threads']['describe']}" in dry.stdout.split("rule describe:")[1]
    assert f'"python": "{DESCRIBE_PYTHON}"' in dry.stdout.split("rule describe:")[1]
