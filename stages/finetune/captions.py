"""What a run reads from the teacher's text table (the embed stage's embeddings).

- `Captions`: the tokenised texts of the table and the rows each sample's FLYP caption and
  spurious captions come from (`_rows_by_class` maps a class to its row);
- `zeroshot_class_weights`: the teacher's zero-shot head, from the table's class prompts;
- `inputs_fingerprint`: the fingerprint of a run's inputs (teacher, texts, class names, data
  folder) that a resume.pt must match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pandas as pd
import torch

from ..method.teacher_text import Embeddings
from ..method.zeroshot import ensemble_prompts
from .runs import FinetuneConfigError, RunConfig


@dataclass
class Captions:
    """Tokenised texts of the embeddings table and the rows each sample's captions come from."""

    tokens: torch.Tensor                 # [N_rows, context] for every row of the table
    caption_row: torch.Tensor            # [C]: row of class c's FLYP caption
    spurious_rows: torch.Tensor | None   # [C, K]: row of spurious template k filled with class c
    trim: bool = False                   # cut token batches after their last end-of-text token
    spurious_groups: list[list[int]] | None = None   # templates (columns) of each type; None: one group

    @classmethod
    def build(cls, emb: Embeddings, tokenizer, classnames: list[str], cfg: RunConfig, path, need_spurious: bool):
        """The run's captions from the embeddings table at `path`: its FLYP caption
        (`caption_template`) of each class, and, when `need_spurious`, the spurious templates of
        `spurious_types` filled with each class, drawn as `spurious_sampling` says."""
        table = emb.table
        caption = table[(table["kind"] == "caption") & (table["template"] == cfg.caption_template)]
        caption_row = _rows_by_class(caption, len(classnames), path, f"caption template {cfg.caption_template!r}")
        spurious_rows = groups = None
        if need_spurious:
            types = cfg.spurious_types
            pool = emb.rows("spurious", types)
            if pool.empty:
                raise FinetuneConfigError(
                    f"{path} holds no spurious captions of types {types or 'any'} (finetune.spurious_types; "
                    f"the table has {sorted(set(emb.rows('spurious')['type']))})")
            # One entry per distinct template string, even when two pools share it.
            templates = list(dict.fromkeys(pool["template"]))
            by_template = {t: _rows_by_class(g.drop_duplicates("class_index"), len(classnames), path, f"template {t!r}")
                           for t, g in pool.groupby("template", sort=False)}
            spurious_rows = torch.stack([by_template[t] for t in templates], dim=1)
            if cfg.spurious_sampling == "type_then_template":
                column = {t: k for k, t in enumerate(templates)}
                groups = [sorted({column[t] for t in g["template"]}) for _, g in pool.groupby("type", sort=True)]
        return cls(tokenizer(table["text"].tolist()), caption_row, spurious_rows, spurious_groups=groups)


def _rows_by_class(rows: pd.DataFrame, n_classes: int, path, what: str) -> torch.Tensor:
    found = dict(zip(rows["class_index"], rows.index))
    missing = [c for c in range(n_classes) if c not in found]
    if missing:
        raise FinetuneConfigError(f"{path} has no embedding of {what} for class(es) {missing}: re-run the embed stage")
    return torch.tensor([found[c] for c in range(n_classes)])


def zeroshot_class_weights(emb: Embeddings, templates: list[str], n_classes: int, path) -> torch.Tensor:
    """The teacher's zero-shot head [C, D] from the table (as zeroshot.zeroshot_weights encodes it)."""
    rows = emb.rows("class_prompt")
    feats = [emb.embeddings[_rows_by_class(rows[rows["template"] == t], n_classes, path,
                                           f"class prompt {t!r} (evaluate.templates)")] for t in templates]
    return ensemble_prompts(torch.stack(feats, dim=1))


def inputs_fingerprint(emb: Embeddings, dataset_cfg: dict) -> str:
    """What a run reads besides its hyper-parameters: the teacher, every text of the embeddings
    table (spurious pools, FLYP captions, class prompts), the class names and the data folder.
    A resume.pt written from other inputs is not resumed."""
    texts = emb.table[["kind", "type", "template", "text"]].to_dict("list")
    payload = {"teacher": emb.meta["fingerprint"], "texts": texts, "classnames": dataset_cfg["classnames"],
               "class_templates": dataset_cfg["evaluate"]["templates"], "data": dataset_cfg["data"]["root"]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
