"""The vLLM backend on a real GPU: runs where vllm is installed and `nvidia-smi` lists a GPU,
skipped elsewhere (it has never run on the machines this project is built on).

    STARFT_VLLM_MODEL=/models/qwen2.5-0.5b-instruct pytest tests/test_vllm_gpu.py

The same steps as `python -m stages.describe check-vllm` (load, build and write a pool, then a
fresh engine with the same seed builds it again). The GPU is detected without touching CUDA in this process: a process that has
initialised CUDA cannot fork vLLM's workers, so the collection must not initialise it, and the
worker start method is set to spawn before anything imports vllm.
"""

import importlib.util
import os
import shutil
import subprocess

import pytest

os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")


def _gpu_listed() -> bool:
    # nvidia-smi talks to the driver (NVML) in its own process; torch.cuda would initialise CUDA here
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm (pip install -e '.[vllm]')"),
    pytest.mark.skipif(not _gpu_listed(), reason="needs a GPU listed by nvidia-smi"),
]


def test_vllm_backend_builds_a_pool_and_a_fresh_engine_repeats_it(tmp_path):
    from stages.describe.output import read_metadata
    from stages.describe.vllm_check import check_job, run

    # STARFT_VLLM_MODEL: an HF id or a local folder; the default is small to keep the test quick
    model = os.environ.get("STARFT_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    job = check_job(model, vllm_args={"max_model_len": 4096, "gpu_memory_utilization": 0.5})
    report = run(job, tmp_path)
    assert report["steps"]["pool_size"], report
    assert report["steps"]["one_slot_each"], report
    assert report["steps"]["provenance"], report
    assert report["steps"]["fresh_engine_same_pool"], report
    meta = read_metadata(tmp_path / "background.descriptions.parquet")
    assert meta["model"] == model and meta["engine"]["env"]["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert meta["engine"]["llm_args"]["max_model_len"] == 4096
