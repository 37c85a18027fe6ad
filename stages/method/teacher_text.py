"""The frozen teacher's text embeddings: the one Parquet table the embed stage writes and
fine-tuning reads (its class prompts, FLYP's captions and StarFT's spurious captions).

Columns: kind, type, template, template_index, class_index, classname, text, embedding (a
fixed-size list of float32, L2-normalised). The Parquet schema metadata under `starft.embed`
holds the teacher's identity and fingerprint, its logit scale and the pools' sha256: a reader
that names its teacher's fingerprint refuses a table made by another teacher, so stale
embeddings can never silently serve as targets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..common.io import atomic_path

META_KEY = b"starft.embed"
FORMAT = 1


class EmbeddingMismatchError(ValueError):
    """Embeddings that do not belong to the teacher (or class list) they are used with."""


def write_embeddings(path: str | Path, table: pd.DataFrame, embeddings: np.ndarray, meta: dict) -> None:
    """Write `table` with an `embedding` column (float32 [N, D], row-aligned) and `meta` under
    META_KEY, atomically."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), embeddings.shape[1])
    arrow = pa.Table.from_pandas(table, preserve_index=False).append_column("embedding", column)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                           META_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)


@dataclass
class Embeddings:
    """A teacher-text table as read: its rows, their embeddings and the file's metadata."""
    table: pd.DataFrame          # one row per text, without the embedding column
    embeddings: torch.Tensor     # [N, D] float32, row-aligned with `table`
    meta: dict

    def rows(self, kind: str, types: list[str] | None = None) -> pd.DataFrame:
        """The table's rows of `kind`, restricted to the pools `types` when given; the index is the row
        of `embeddings`."""
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
