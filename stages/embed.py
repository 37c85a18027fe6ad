"""Embed stage: the frozen teacher's text embeddings of every caption fine-tuning will need.

One Parquet table, one row per text:

- kind "class_prompt": each `evaluate.templates` template filled with each class name (the
  zero-shot head that initialises the linear heads of ft / lp / lpft);
- kind "caption": `finetune.caption_template` filled with each class name (FLYP's t_i);
- kind "spurious": each template of each spurious pool (`data/{dataset}/pools/{type}
  .descriptions.parquet`, column `template`, `{}` where the class name goes) filled with each
  class name (StarFT's s_i).

Columns: kind, type, template, template_index, class_index, classname, text, embedding (a
fixed-size list of float32, L2-normalised). The Parquet schema metadata under `starft.embed`
holds the teacher's identity and fingerprint, its logit scale and the pools' sha256: the
fine-tune stage refuses a table whose fingerprint is not its teacher's, so stale embeddings can
never silently serve as targets.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .io import atomic_path, sha256_file, versions
from .models import load_clip, resolve_device
from .zeroshot import encode_texts

META_KEY = b"starft.embed"
FORMAT = 1
DEFAULT_CAPTION_TEMPLATE = "a photo of a {}."


class EmbeddingMismatchError(ValueError):
    """Embeddings that do not belong to the teacher (or class list) they are used with."""


def fill(template: str, classname: str) -> str:
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


def write_embeddings(path: str | Path, table: pd.DataFrame, embeddings: np.ndarray, meta: dict) -> None:
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), embeddings.shape[1])
    arrow = pa.Table.from_pandas(table, preserve_index=False).append_column("embedding", column)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                           META_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)


@dataclass
class Embeddings:
    table: pd.DataFrame          # one row per text, without the embedding column
    embeddings: torch.Tensor     # [N, D] float32, row-aligned with `table`
    meta: dict

    def rows(self, kind: str, types: list[str] | None = None) -> pd.DataFrame:
        sel = self.table["kind"] == kind
        if types is not None:
            sel &= self.table["type"].isin(types)
        return self.table[sel]


def read_embeddings(path: str | Path, expected_fingerprint: str | None = None,
                    classnames: list[str] | None = None) -> Embeddings:
    """Read a teacher-text table; refuse it if made by another teacher or for other classes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher text embeddings {path} not found: run the embed stage first")
    arrow = pq.read_table(path)
    raw = (arrow.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise EmbeddingMismatchError(f"{path}: no '{META_KEY.decode()}' metadata: not written by stages.embed")
    meta = json.loads(raw)
    if expected_fingerprint is not None and meta["fingerprint"] != expected_fingerprint:
        raise EmbeddingMismatchError(
            f"{path} holds the text embeddings of teacher {meta['teacher'].get('name')!r} "
            f"(fingerprint {meta['fingerprint']}), but the model being fine-tuned has fingerprint "
            f"{expected_fingerprint}: the embeddings are stale; re-run the embed stage for this model "
            f"(e.g. delete {path} and run snakemake again)")
    if classnames is not None and meta["classnames"] != list(classnames):
        raise EmbeddingMismatchError(f"{path} was computed for classes {meta['classnames']}, "
                                     f"the config names {list(classnames)}: re-run the embed stage")
    column = arrow.column("embedding").combine_chunks()
    dim = column.type.list_size
    emb = torch.from_numpy(np.asarray(column.flatten(), dtype=np.float32).reshape(-1, dim).copy())
    return Embeddings(arrow.drop_columns(["embedding"]).to_pandas(), emb, meta)


def run(dataset_cfg: dict, pool_paths: list[str], out: str | Path, device: str | None = None) -> Embeddings:
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


def main(argv=None) -> None:
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
