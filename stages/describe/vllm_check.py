"""`python -m stages.describe check-vllm`: one command that tells a user whether the vLLM backend
works on this machine (a GPU, or the CPU with vLLM's CPU build), before a real run.

    python -m stages.describe check-vllm --model Qwen/Qwen2.5-0.5B-Instruct
    python -m stages.describe check-vllm --model /models/qwen2.5-7b-instruct --tensor-parallel-size 2 \\
        --vllm-args '{"max_model_len": 4096}'
    python -m stages.describe check-vllm --model data/models/smollm2-135m-instruct --device cpu \\
        --vllm-args '{"max_model_len": 1024, "enforce_eager": true}'          # the CPU build

It runs in the describe environment (`--python`, default .venv-describe/bin/python), as the
describe job does.

It loads the model with the same code path as the pipeline (`VLLMBackend`, schema-validated
`vllm_args`), builds one small pool through the shared prompts, parser and filters and writes it;
then it shuts that engine down, starts a fresh one with the same arguments and seed, builds the
pool again and compares the two: what a rerun of the describe job would give. (Asking one engine
twice would not show it: the second request reuses the first one's prefix cache and engine state.)
tests/test_vllm_gpu.py runs the same function where vllm and a GPU exist.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from .. import config as stage_config
from . import checks
from .environment import DescribeEnvError, run_under
from .vllm_support import VLLMSetupError, require_vllm, vllm_distribution

CLASSES = ["landbird", "waterbird"]


def check_job(model: str, *, tensor_parallel_size: int = 1, vllm_args: dict | None = None, seed: int = 0,
              n_samples: int = 4, max_tokens: int = 128, min_pool: int = 3, device: str = "auto") -> dict:
    """A small describe job for `model`, validated like a real config (wrong vllm_args fail here)."""
    describe = {"backend": "vllm", "model": model, "tensor_parallel_size": tensor_parallel_size,
                "vllm_args": vllm_args or {}, "n_samples": n_samples, "max_tokens": max_tokens,
                "min_pool": min_pool, "types": ["background"], "device": device}
    cfg = {"datasets": {"check": {"reader": "waterbirds", "root": "unused", "classnames": CLASSES}},
           "experiments": {"check": {"seed": seed, "domain": "birds", "train": "check", "model": {"name": "unused"},
                                     "describe": describe}}}
    validated = stage_config.validate(cfg)
    checks.check(validated["experiments"])
    d = validated["experiments"]["check"]
    return {"seed": d["seed"], "domain": d["domain"], "classnames": CLASSES, "synthetic": False,
            "describe": checks.effective(d["describe"])}


def _engine(job: dict):
    """The job's engine, as the describe job makes it."""
    from .backends import make_backend

    return make_backend(job["describe"], job["seed"], job["describe"]["threads"])


def _content(pool) -> tuple[list[dict], list[dict]]:
    """What a pool holds, as the Parquet file stores it: its rows and its rejected lines."""
    return pool.rows, [r.as_dict() for r in pool.rejections]


def _differences(first, second, limit: int = 5) -> list[str]:
    a, b = (list(dict.fromkeys([r["raw_line"] for r in p.rows] + [r.raw_line for r in p.rejections]))
            for p in (first, second))
    only_a = [line for line in a if line not in b][:limit]
    only_b = [line for line in b if line not in a][:limit]
    return [f"first engine only: {line!r}" for line in only_a] + [f"fresh engine only: {line!r}" for line in only_b]


def run(job: dict, out_dir: str | Path, spurious_type: str = "background") -> dict:
    """Load, generate, write, then a fresh engine generates again; returns what happened (`ok`
    when every step passed)."""
    from .job import build_pool
    from .output import read_metadata, write_outputs

    params = job["describe"]
    report: dict = {"model": params["model"], "vllm": vllm_distribution(), "steps": {}}
    start = time.perf_counter()
    backend = _engine(job)
    report["load_s"] = round(time.perf_counter() - start, 1)
    report["engine"] = backend.engine

    start = time.perf_counter()
    pool = build_pool(job, spurious_type, backend=backend)
    report["generate_s"] = round(time.perf_counter() - start, 1)
    report["templates"] = [r["template"] for r in pool.rows]
    report["rejection_counts"] = pool.rejection_counts()
    report["steps"]["pool_size"] = len(pool.rows) >= params["min_pool"]
    report["steps"]["one_slot_each"] = all(r["template"].count("{}") == 1 for r in pool.rows)

    out = Path(out_dir) / f"{spurious_type}.descriptions.parquet"
    write_outputs(pool, out, out.with_name(f"{spurious_type}.preview.md"), dataset="check", job=job)
    meta = read_metadata(out)
    report["parquet"] = str(out)
    report["steps"]["provenance"] = (meta["backend"] == "vllm" and meta["engine"]["vllm"]["distribution"] in meta["versions"]
                                     and meta["sampling"]["instances"]["repetition_penalty"] == 1.0)

    # A fresh engine, same arguments and seed: the same pool means a rerun of the job repeats it
    # (vLLM promises this only with the switches `VLLMBackend` sets, on the same hardware and
    # version). The first engine is shut down first: both would not fit on one GPU.
    backend.close()
    start = time.perf_counter()
    fresh = _engine(job)
    again = build_pool(job, spurious_type, backend=fresh)
    fresh.close()
    report["fresh_engine_s"] = round(time.perf_counter() - start, 1)
    report["steps"]["fresh_engine_same_pool"] = _content(again) == _content(pool)
    report["fresh_engine_differences"] = _differences(pool, again)
    report["ok"] = all(report["steps"].values())
    return report


def main(argv: list[str] | None = None) -> None:
    """The command line: run the check, print its report as JSON and PASS/FAIL per step; exit 1 if any failed."""
    argv = sys.argv[2:] if argv is None else argv  # `python -m stages.describe check-vllm ...`
    ap = argparse.ArgumentParser(prog="python -m stages.describe check-vllm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="instruct model: HF id or local folder in HF layout")
    ap.add_argument("--tensor-parallel-size", type=int, default=1)
    ap.add_argument("--vllm-args", default="{}", help="JSON object, as describe.vllm_args in the config")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=["auto", "cpu"], default="auto", help="as describe.device (cpu: vLLM's CPU build)")
    ap.add_argument("--out-dir", help="where the test pool goes (default: a temporary folder)")
    ap.add_argument("--python", default=stage_config.DESCRIBE_PYTHON,
                    help="the interpreter of the environment with vLLM, as describe.python (default: %(default)s)")
    # the job validated by the process that ran this command again in the describe environment
    # (validating needs stages.datasets, whose torchvision that environment lacks)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        job = json.loads(args.job) if args.job else check_job(
            args.model, tensor_parallel_size=args.tensor_parallel_size, vllm_args=json.loads(args.vllm_args),
            seed=args.seed, device=args.device)
        run_under(args.python, ["check-vllm", *argv, "--job", json.dumps(job)])
        require_vllm(sys.executable)
    except (stage_config.ConfigError, DescribeEnvError, VLLMSetupError) as e:
        sys.exit(str(e))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            report = run(job, args.out_dir or tmp)
        except VLLMSetupError as e:
            sys.exit(str(e))
    print(json.dumps(report, indent=1, default=str))
    for step, passed in report["steps"].items():
        print(f"{'PASS' if passed else 'FAIL'}  {step}", file=sys.stderr)
    sys.exit(0 if report["ok"] else 1)
