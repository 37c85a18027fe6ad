"""The pool on disk: `<type>.descriptions.parquet` (one row per template, provenance in the file
metadata) and `<type>.preview.md` (a short human-readable summary next to it).

Both are written atomically and hold no timestamp, so that the same seed and backend on the CPU
give byte-identical files.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..common.io import atomic_path, versions
from ..synthetic.vocabulary import rendered_word_counts
from .parse import REASONS
from .pool import Pool

METADATA_KEY = b"starft.describe"
SCHEMA = pa.schema([
    ("spurious_type", pa.string()),
    ("template", pa.string()),       # `{}` where the class name goes
    ("phrase", pa.string()),         # the template without its caption scaffold
    ("backend", pa.string()),
    ("model", pa.string()),
    ("prompt_sha256", pa.string()),  # file backend: sha256 of the template file
    ("seed", pa.int64()),
    ("sample_index", pa.int64()),    # which of the n_samples answers named the instance
    ("raw_line", pa.string()),       # the answer's line as generated (or the file's line)
    ("instance", pa.string()),       # step 1's normalised instance
    ("raw_template", pa.string()),   # step 2's answer as generated
    ("from_example", pa.bool_()),    # the instance copies the prompt's worked example
])
COLUMNS = SCHEMA.names


def package_versions(backend: str) -> dict[str, str]:
    """`versions()` plus the versions of the packages the backend generates with (those installed)."""
    out = versions()
    extra = {"transformers": ("transformers", "tokenizers", "gguf", "accelerate"), "vllm": ("vllm", "vllm-gguf-plugin")}
    for name in extra.get(backend, ()):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def file_metadata(pool: Pool, *, dataset: str, job: dict) -> dict:
    """The provenance stored in the Parquet file: data set, prompt, backend, model, seed, engine,
    sampling, package versions and every rejected line."""
    params = job["describe"]
    return {
        "dataset": dataset,
        "spurious_type": pool.spurious_type,
        "domain": job["domain"],
        "classnames": job["classnames"],
        "backend": pool.backend,
        "model": pool.model,
        "seed": pool.seed,
        "params": params,  # the whole describe section: sampling, filters, model and file
        "prompt_sha256": pool.prompt_sha256,
        "prompt": pool.prompt,
        "engine": pool.engine,  # e.g. vLLM's LLM arguments and environment switches
        "sampling": pool.sampling,  # per step, every sampling parameter the engine got
        "versions": package_versions(pool.backend),
        "n_templates": len(pool.rows),
        "rejection_counts": pool.rejection_counts(),
        "rejected": [r.as_dict() for r in pool.rejections],
    }


def write_parquet(pool: Pool, path: str | Path, meta: dict) -> None:
    """Write the pool's rows (SCHEMA) with `meta` as JSON under METADATA_KEY, zstd-compressed, atomically."""
    table = pa.Table.from_pylist(pool.rows, schema=SCHEMA)
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_metadata(path: str | Path) -> dict:
    """The provenance `write_parquet` stored in a pool file."""
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])


def preview_markdown(pool: Pool, meta: dict, *, synthetic: bool, max_rejected_examples: int = 3) -> str:
    """The Markdown preview: provenance, the kept templates and a table of rejections by reason with up
    to `max_rejected_examples` examples each; for a synthetic world, how many phrases use a word it renders."""
    n = len(pool.rows)
    out = [f"# Spurious pool `{pool.spurious_type}` of `{meta['dataset']}`", "",
           f"- backend `{pool.backend}`, model `{pool.model}`, seed {pool.seed}",
           f"- prompt sha256 `{pool.prompt_sha256}`",
           f"- {n} templates kept, {len(pool.rejections)} lines rejected"]
    copied = sum(r["from_example"] for r in pool.rows)
    if copied:
        out.append(f"- {copied} of {n} instances copy a line of the prompt's worked example (column from_example)")
    if synthetic:
        hits, words = rendered_word_counts([r["phrase"] for r in pool.rows])
        listed = ", ".join(f"{w} ({c})" for w, c in sorted(words.items(), key=lambda x: (-x[1], x[0])))
        out.append(f"- synthetic world: {hits} of {n} phrases ({100 * hits / max(n, 1):.0f}%) use a word the "
                   f"world renders, so the tiny CLIP can relate them to pixels" + (f": {listed}" if listed else ""))
    out += ["", "## Templates", ""]
    out += [f"{i + 1}. `{r['template']}`" for i, r in enumerate(pool.rows)]
    if pool.rejections:
        out += ["", "## Rejected lines", "", "| reason | count | meaning | examples |", "|---|---|---|---|"]
        for reason, count in pool.rejection_counts().items():
            examples = [r.raw_line for r in pool.rejections if r.reason == reason][:max_rejected_examples]
            shown = "; ".join(f"`{e[:60].replace('|', '/').replace('`', '')}`" for e in examples)
            out.append(f"| {reason} | {count} | {REASONS[reason]} | {shown} |")
    return "\n".join(out) + "\n"


def write_outputs(pool: Pool, parquet_path: str | Path, preview_path: str | Path, *, dataset: str,
                  job: dict) -> dict:
    """`job`: seed, domain, classnames, describe section and `synthetic` (see job.describe_job)."""
    meta = file_metadata(pool, dataset=dataset, job=job)
    write_parquet(pool, parquet_path, meta)
    with atomic_path(preview_path) as tmp:
        tmp.write_text(preview_markdown(pool, meta, synthetic=job["synthetic"]))
    return meta
