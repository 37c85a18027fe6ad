"""`python -m stages.export`: one run as an open_clip `local-dir:` folder (see stages.export.run)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .layout import ExportError
from .run import export


def main(argv=None) -> None:
    """The command line: export one run (`export`) and print how open_clip loads it."""
    p = argparse.ArgumentParser(description="Export a fine-tuned run for open_clip (local-dir: / HF hub).")
    p.add_argument("--config", required=True,
                   help="JSON: experiment, model {name, pretrained}, device, data {dataset, reader}, "
                        "finetune {wiseft_alpha, wiseft_of} (read for wiseft)")
    p.add_argument("--method", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--checkpoint", required=True, help="the run's checkpoint.pt (wiseft: the wiseft_of run's)")
    p.add_argument("--data-check", default=None,
                   help="the training set's data_check.json (class names and templates of WiSE-FT's zero-shot head)")
    p.add_argument("--eval-dir", default=None, help="the run's eval/ folder, for the model card's metrics")
    p.add_argument("--out", required=True, help="the folder to write")
    a = p.parse_args(argv)
    data_check = json.loads(Path(a.data_check).read_text()) if a.data_check else None
    try:
        out = export(json.loads(a.config), a.method, a.seed, a.checkpoint, a.out, data_check, a.eval_dir)
    except ExportError as e:
        sys.exit(f"error: {e}")
    print(f"exported {a.method} seed {a.seed} to {out}: load it with open_clip.create_model_and_transforms"
          f"(\"local-dir:{out}\")")


if __name__ == "__main__":
    main()
