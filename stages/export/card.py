"""The model card (README.md) of an exported run: how to load it, the run (method, lambda, data,
teacher, recipe, seed, selected epoch, WiSE-FT's alpha), its linear head if any, and its metrics
table read from the run's evaluation records (stages.evaluate's eval/<target>.json)."""

from __future__ import annotations

import json
from pathlib import Path

from ..method.registry import METHODS
from .layout import HEAD_FILE, ExportError

# the hyper-parameters a reader of the card looks for first; the whole resolved configuration is
# in open_clip_config.json (`starft.train_config`)
RECIPE = ("epochs", "batch_size", "lr", "weight_decay", "warmup_steps", "crop_scale", "augment", "precision",
          "select", "caption_template", "spurious_types", "spurious_sampling", "kl_scale", "lp_l2_grid")
METRICS = (("n", "n", "{:d}"), ("accuracy", "accuracy", "{:.2f}"), ("worst_group", "worst-group", "{:.2f}"),
           ("average", "average", "{:.2f}"), ("adjusted_average", "adjusted avg.", "{:.2f}"))
ROLE_ORDER = ("id", "shift", "group", "zeroshot", "transfer")


def read_evals(eval_dir: str | Path | None, method: str, seed: int, alpha: float | None) -> list[dict] | None:
    """The run's evaluation records, training set first; None when there is no eval folder. A
    record of another run (method, seed, or WiSE-FT alpha) is refused: its numbers would be
    printed under this model's name."""
    if eval_dir is None or not Path(eval_dir).is_dir():
        return None
    records = []
    for path in sorted(Path(eval_dir).glob("*.json")):
        r = json.loads(path.read_text())
        if r.get("method") != method or r.get("seed") != seed:
            raise ExportError(f"{path}: the record of {r.get('method')} seed {r.get('seed')}, "
                              f"not of the exported run {method} seed {seed}")
        if alpha is not None and r.get("wiseft_alpha") != alpha:
            raise ExportError(f"{path}: WiSE-FT evaluated at alpha {r.get('wiseft_alpha')}, but exported at "
                              f"finetune.wiseft_alpha = {alpha}: re-evaluate the run")
        records.append(r)
    rank = {role: i for i, role in enumerate(ROLE_ORDER)}
    return sorted(records, key=lambda r: (rank.get(r.get("role"), len(rank)), r.get("target", "")))


def metrics_table(records: list[dict] | None, eval_dir) -> str:
    """The card's metrics section: a Markdown table of every record's splits and what the columns mean,
    or a line saying why there is none (`records` None: no eval folder; empty: no record in it)."""
    if records is None:
        return (f"Not evaluated: no evaluation records were found (looked in `{eval_dir}`). "
                "`snakemake results/runs/<experiment>/<method>/seed<s>/eval` writes them; export again after it.\n")
    if not records:
        return f"Not evaluated: `{eval_dir}` holds no evaluation record.\n"
    header = ["target", "role", "split", "head"] + [title for _, title, _ in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        for split, m in r["splits"].items():
            cells = [r["target"], r["role"], split, r.get("head", "")]
            cells += [fmt.format(m[key]) if m.get(key) is not None else "" for key, _, fmt in METRICS]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    precision = records[0].get("precision")
    return ("\n".join(lines) + "\n\nAccuracies in %; worst-group, average (mean of group accuracies) and "
            "adjusted average (group accuracies weighted by the training set's group sizes) on group-shift "
            "sets only. Head `linear`: the run's own linear head (`linear_head.safetensors`); `zeroshot`: the "
            f"exported text encoder with the target's class prompts. Evaluated at precision `{precision}`.\n")


def model_card(meta: dict, records: list[dict] | None, eval_dir) -> str:
    """The README.md of the exported folder. `meta` is the `starft` section of its open_clip_config.json."""
    train, teacher = meta["train_config"], meta["teacher"]
    base = METHODS[meta["base_method"]]
    name = f"{meta['experiment']} / {meta['method']} / seed {meta['seed']}"
    if not base.uses_spurious:
        lam = f"not used ({meta['base_method']} has no regulariser)"
    else:
        lam = f"{train['lambda']} ({train['schedule']} schedule, regulariser `{base.regularizer}`)"
    rows = [("method", (f"`{meta['method']}` (base method `{meta['base_method']}`: objective "
                        f"`{base.objective}`, regulariser `{base.regularizer}`)")),
            ("λ", lam),
            ("data", f"`{meta['data'].get('dataset')}` (reader `{meta['data'].get('reader')}`)"),
            ("teacher (zero-shot model)", f"`{teacher.get('name')}`"
                                          + (f" / `{teacher['pretrained']}`" if teacher.get("pretrained") else "")
                                          + f" (fingerprint `{teacher.get('fingerprint')}`)"),
            ("seed", str(meta["seed"])),
            ("checkpoint", (f"`{meta['checkpoint']}` (sha256 `{meta['checkpoint_sha256'][:16]}…`), selected: "
                            f"{json.dumps(meta.get('selected'))}"))]
    if meta.get("wiseft_alpha") is not None:
        rows.append(("WiSE-FT", f"θ = (1 − α)·θ_zero-shot + α·θ_{meta['wiseft_of']}, α = {meta['wiseft_alpha']}"
                                + (" (the linear head likewise with the zero-shot head)" if meta.get("head") else "")))
    rows += [(f"recipe: {k}", f"`{json.dumps(train[k])}`") for k in RECIPE if k in train]
    rows.append(("tokenizer", f"`{meta['tokenizer']['tokenizer']}`"
                              + (f" (`{meta['tokenizer']['hf_tokenizer_name']}`)" if meta['tokenizer']['hf_tokenizer_name']
                                 else " (open_clip's CLIP BPE)")
                              + f", context length {meta['tokenizer']['context_length']}"))
    run_table = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    head = ""
    if meta.get("head"):
        head = (f"\n## Linear head\n\nThis run classifies its {len(meta['head']['classnames'])} training classes with a "
                f"linear head, which open_clip has no place for: it is `{HEAD_FILE}` (tensors `weight` [C, D] and "
                "`bias` [C]; class names in its metadata and in open_clip_config.json, `starft.head.classnames`). "
                "The run's logits:\n\n```python\n"
                "from safetensors.torch import load_file\nimport torch.nn.functional as F\n"
                f"head = load_file(\"<folder>/{HEAD_FILE}\")\n"
                "logits = F.normalize(model.encode_image(images), dim=-1) @ head[\"weight\"].T + head[\"bias\"]\n```\n\n"
                "On other label spaces the run is evaluated zero-shot with its text encoder, as below.\n")
    return f"""---
library_name: open_clip
pipeline_tag: zero-shot-image-classification
tags:
- clip
- open_clip
- robust-fine-tuning
- starft
---

# {name}

A CLIP model fine-tuned by the StarFT pipeline (robust fine-tuning of CLIP; Kim et al., IJCAI 2025):
run `{meta['method']}`, seed {meta['seed']}, of experiment `{meta['experiment']}`. Its licence is that of the
teacher's weights.

```python
import open_clip
model, _, preprocess = open_clip.create_model_and_transforms("local-dir:<this folder>")   # or "hf-hub:<repo>"
tokenizer = open_clip.get_tokenizer("local-dir:<this folder>")
```

## The run

{run_table}

The run's whole resolved configuration, the teacher's identity and the package versions are in
`open_clip_config.json` under `starft` (open_clip reads only `model_cfg` and `preprocess_cfg`).
{head}
## Metrics

{metrics_table(records, eval_dir)}"""
