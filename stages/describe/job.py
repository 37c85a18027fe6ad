"""One describe job: what its pools depend on, its backend loaded once, and each type's pool built.

Shared by the `generate` command (stages.describe.cli) and the vLLM check (stages.describe.vllm_check).
"""

from __future__ import annotations

from pathlib import Path

from . import checks
from .pool import Pool, file_pool, generate_pool
from .prompts import load_prompt

JOB_KEYS = ("seed", "domain", "classnames", "describe")


def describe_job(dataset_config: dict) -> dict:
    """What a pool depends on: seed, domain, class names, the describe section and whether the
    data set is synthetic. Accepts an experiment's training job (stages.config.train_job) or such
    a job (as the rule passes it)."""
    missing = [k for k in JOB_KEYS if k not in dataset_config]
    if missing:
        raise SystemExit(f"--dataset-config lacks {missing}; pass an experiment's training job (stages.config.train_job)")
    job = {k: dataset_config[k] for k in JOB_KEYS}
    job["describe"] = checks.effective(job["describe"])
    job["synthetic"] = bool(dataset_config.get("synthetic", "synthetic" in dataset_config.get("data", {})))
    return job


def build_pool(job: dict, spurious_type: str, *, prompts_dir: str | Path | None = None,
               threads: int = 0, backend=None) -> Pool:
    """The pool of one spurious type for one job (`describe_job`); not yet size-checked."""
    params = job["describe"]
    seed, classnames = job["seed"], job["classnames"]
    if params["backend"] == "file":
        path = params["files"].get(spurious_type)
        if path is None:
            raise ValueError(f"describe.backend is 'file' but describe.files has no entry for {spurious_type!r} "
                             f"(has {sorted(params['files'])})")
        return file_pool(spurious_type, path, params, classnames=classnames, seed=seed)
    spec = load_prompt(spurious_type, prompts_dir)
    if backend is None:
        backend = load_backend(job, threads)
    return generate_pool(spec, backend, params, domain=job["domain"], classnames=classnames, seed=seed)


def load_backend(job: dict, threads: int = 0):
    """The job's generating backend, loaded once for all its pools; None for the file backend."""
    if job["describe"]["backend"] == "file":
        return None
    from .backends import make_backend

    return make_backend(job["describe"], job["seed"], threads)
