"""Run the real Snakemake workflow on a reduced synthbirds config in a temporary directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
