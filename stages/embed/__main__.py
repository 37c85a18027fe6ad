"""`python -m stages.embed`: the teacher text embeddings of one experiment (see stages.embed.run)."""

from __future__ import annotations

import argparse
import json
import sys

from .run import run


def main(argv=None) -> None:
    """The command line: embed the class prompts and pool captions (`run`) and print the counts per kind and type."""
    p = argparse.ArgumentParser(description="Teacher text embeddings of class prompts and spurious captions.")
    p.add_argument("--dataset-config", required=True, help="JSON of the validated dataset config")
    p.add_argument("--pools", nargs="+", required=True, help="spurious pool Parquet files ({type}.descriptions.parquet)")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default=None, help="overrides finetune.device")
    a = p.parse_args(argv)
    try:
        e = run(json.loads(a.dataset_config), a.pools, a.out, a.device)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    counts = e.table.groupby(["kind", "type"]).size().to_dict()
    print(f"embedded {len(e.table)} texts (dim {e.meta['embed_dim']}, teacher {e.meta['fingerprint']}): {counts}")


if __name__ == "__main__":
    main()
