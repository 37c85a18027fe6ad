"""The embed stage's core: the frozen teacher's text embeddings of every caption fine-tuning will need.

One Parquet table, one row per text:

- kind "class_prompt": each `evaluate.templates` template filled with each class name (the
  zero-shot head that initialises the linear heads of ft / lp / lpft);
- kind "caption": `finetune.caption_template` filled with each class name (FLYP's t_i);
- kind "spurious": each template of each spurious pool (`data/{dataset}/pools/{type}
  .descriptions.parquet`, column `template`, `{}` where the class name goes) filled with each
  class name (StarFT's s_i).

The table's columns and fingerprint are stages.method.teacher_text's, the module fine-tuning
reads it with.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..common.io import sha256_file, versions
from ..method.models import load_clip, resolve_device
from ..method.teacher_text import FORMAT, Embeddings, write_embeddings
from ..method.zeroshot import encode_texts

DEFAULT_CAPTION_TEMPLATE = "a photo of a {}."


def fill(template: str, classname: str) -> str:
    """`template` with its "{}" replaced by the class name (other braces are kept)."""
    # `replace`, not `format`: LLM-written templates may hold other braces.
    return template.replace("{}", classname)


def pool_type(path: str | Path) -> str:
    """`data/x/pools/background.descriptions.parquet` -> "background"."""
    return Path(path).name.split(".")[0]


def read_pool(path: str | Path) -> list[str]:
    """The distinct templates of one pool file, in file order; errors name the file and row."""
    path = Path(path)
    try:
        df = pd.read_parquet(path, columns=["template"])
    except Exception as e:
        raise ValueError(f"{path}: cannot read column 'template' of the spurious pool ({e})") from e
    templates = []
    for row, t in enumerate(df["template"]):
        if not isinstance(t, str) or "{}" not in t:
            raise ValueError(f"{path}: row {row}: template {t!r} has no '{{}}' where the class name goes")
        if t not in templates:
            templates.append(t)
    if not templates:
        raise ValueError(f"{path}: the spurious pool is empty")
    return templates


def caption_table(classnames: list[str], class_templates: list[str], caption_templates: list[str],
                  pools: dict[str, list[str]]) -> pd.DataFrame:
    """Every text to embed, one row each (no embeddings yet)."""
    rows = []
    for kind, typ, templates in ([("class_prompt", "", class_templates), ("caption", "", caption_templates)]
                                 + [("spurious", t, tpl) for t, tpl in pools.items()]):
        for k, template in enumerate(templates):
            for c, name in enumerate(classnames):
                text = template.format(name) if kind == "class_prompt" else fill(template, name)
                rows.append({"kind": kind, "type": typ, "template": template, "template_index": k,
                             "class_index": c, "classname": name, "text": text})
    return pd.DataFrame(rows)


def caption_templates(finetune: dict) -> list[str]:
    """FLYP caption templates of the dataset and of its variants."""
    templates = [finetune.get("caption_template", DEFAULT_CAPTION_TEMPLATE)]
    templates += [v["caption_template"] for v in (finetune.get("variants") or {}).values() if "caption_template" in v]
    return list(dict.fromkeys(templates))


def run(dataset_cfg: dict, pool_paths: list[str], out: str | Path, device: str | None = None) -> Embeddings:
    """Embed every text of `caption_table` with the frozen teacher (float32, on `device`, default
    finetune.device) and write the table to `out` atomically with its provenance; returns it (embeddings on the CPU)."""
    ft = dataset_cfg.get("finetune", {})
    device = resolve_device(device or ft.get("device", "auto"))
    threads = ft.get("threads", 0)
    if threads:
        torch.set_num_threads(threads)
    model_cfg = dataset_cfg["model"]
    clip = load_clip(model_cfg["name"], model_cfg.get("pretrained"), device=device)
    clip.model.eval()
    pools = {pool_type(p): read_pool(p) for p in pool_paths}
    table = caption_table(dataset_cfg["classnames"], dataset_cfg["evaluate"]["templates"], caption_templates(ft), pools)
    # float32 on every device: these are the regulariser's fixed targets.
    emb = encode_texts(clip.model, clip.tokenizer, table["text"].tolist(), device).cpu()
    meta = {
        "format": FORMAT,
        "fingerprint": clip.identity["fingerprint"],
        "teacher": clip.identity,
        "logit_scale": float(clip.model.logit_scale.detach().exp()),
        "embed_dim": int(emb.shape[1]),
        "classnames": list(dataset_cfg["classnames"]),
        "pools": {pool_type(p): {"path": str(p), "sha256": sha256_file(p), "n_templates": len(pools[pool_type(p)])}
                  for p in pool_paths},
        "versions": versions(),
    }
    write_embeddings(out, table, emb.numpy(), meta)
    return Embeddings(table, emb, meta)
