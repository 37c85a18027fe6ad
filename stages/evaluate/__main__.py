"""`python -m stages.evaluate`: one run on the targets of its job (see stages.evaluate.run)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import datasets
from ..common.io import write_json
from .run import run


def main(argv=None) -> None:
    """The command line: evaluate one run on every target of its config, writing <out-dir>/<target>.json each."""
    p = argparse.ArgumentParser(description="Evaluate a zero-shot or fine-tuned CLIP on the given targets of its experiment.")
    p.add_argument("--config", required=True,
                   help="JSON: experiment, model, evaluate, finetune, and targets: [{target, role, reader, root, "
                        "splits, data_check}] (data_check: the target's data check JSON: class names, groups)")
    p.add_argument("--method", default="zeroshot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--wiseft", action="store_true", help="also evaluate the WiSE-FT interpolation grid")
    p.add_argument("--out-dir", required=True, help="writes <target>.json per target")
    a = p.parse_args(argv)
    cfg = json.loads(a.config)
    data_checks = {t["target"]: json.loads(Path(t["data_check"]).read_text()) for t in cfg["targets"]}
    try:
        results = run(cfg, data_checks, a.method, a.seed, a.checkpoint, a.wiseft)
    except (datasets.DataError, datasets.DatasetConfigError) as e:
        sys.exit(f"error: {e}")
    for target, result in results.items():
        write_json(Path(a.out_dir) / f"{target}.json", result)
        for split, m in result["splits"].items():
            groups = (f"  worst-group {m['worst_group']:.2f}  adjusted {m['adjusted_average']:.2f}"
                      if "worst_group" in m else "")
            print(f"{a.method} seed {a.seed} {target} {split}: accuracy {m['accuracy']:.2f}{groups}")


if __name__ == "__main__":
    main()
