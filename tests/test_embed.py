"""Embed stage: the teacher-text table, its format and the fingerprint refusal."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pyarrow as pa
import pytest
import torch

from helpers import CLASSNAMES, POOLS, dataset_config, make_dataset, make_pools, make_tiny_clip
from stages.embed import run as embed
from stages.embed.__main__ import main as embed_main
from stages.method.teacher_text import EmbeddingMismatchError, read_embeddings
from stages.method.models import load_clip
from stages.method.zeroshot import encode_texts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embed")
    model = make_tiny_clip(tmp / "clip")
    cfg = dataset_config(make_dataset(tmp / "data", (8, 4, 4)), model)
    pools = make_pools(tmp / "pools")
    out = tmp / "emb" / "teacher_text.parquet"
    embed.run(cfg, pools, out)
    return tmp, cfg, pools, out


def test_table_rows_columns_and_embeddings(world):
    tmp, cfg, pools, out = world
    e = read_embeddings(out)
    n_spurious = len(POOLS["background"]) + len(POOLS["texture"])
    assert len(e.table) == len(CLASSNAMES) * (len(cfg["evaluate"]["templates"]) + 1 + n_spurious)
    assert e.rows("caption")["text"].tolist() == ["a photo of a landbird.", "a photo of a waterbird."]
    spur = e.rows("spurious", ["texture"])
    assert "a photo of a furry waterbird." in spur["text"].tolist()
    assert sorted(set(e.rows("spurious")["type"])) == ["background", "texture"]

    schema = pq.read_schema(out)
    assert schema.field("embedding").type == pa.list_(pa.float32(), 32)   # fixed-size list
    clip = load_clip(cfg["model"]["name"])
    want = encode_texts(clip.model.eval(), clip.tokenizer, e.table["text"].tolist(), torch.device("cpu"))
    assert torch.allclose(e.embeddings, want, atol=1e-6)
    assert torch.allclose(e.embeddings.norm(dim=1), torch.ones(len(e.table)), atol=1e-5)
    assert e.meta["fingerprint"] == clip.identity["fingerprint"]
    assert e.meta["logit_scale"] == pytest.approx(float(clip.model.logit_scale.detach().exp()))
    assert set(e.meta["pools"]) == {"background", "texture"}


def test_refuses_embeddings_of_another_teacher(world):
    tmp, cfg, pools, out = world
    with pytest.raises(EmbeddingMismatchError, match=r"teacher_text\.parquet.*fingerprint.*stale"):
        read_embeddings(out, expected_fingerprint="0123456789abcdef")
    with pytest.raises(EmbeddingMismatchError, match="classes"):
        read_embeddings(out, classnames=["a", "b"])


def test_finetune_cli_refuses_a_stale_table(world, tmp_path, capsys):
    from stages.finetune.__main__ import main

    tmp, cfg, pools, out = world
    other = make_tiny_clip(tmp_path / "other", seed=1)     # another teacher: different weights
    stale_cfg = {**cfg, "model": {"name": other, "pretrained": None}}
    with pytest.raises(SystemExit) as e:
        main(["--dataset-config", json.dumps(stale_cfg), "--method", "flyp", "--seed", "0",
              "--embeddings", str(out), "--out-dir", str(tmp_path / "run"), "--no-progress"])
    assert "error:" in str(e.value) and "stale" in str(e.value) and str(out) in str(e.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_pool_errors_name_the_file_and_row(tmp_path):
    bad = tmp_path / "texture.descriptions.parquet"
    pd.DataFrame({"template": ["a photo of a {} in fog.", "no slot here"]}).to_parquet(bad)
    with pytest.raises(ValueError, match=r"texture\.descriptions\.parquet: row 1"):
        embed.read_pool(bad)
    dup = tmp_path / "background.descriptions.parquet"
    pd.DataFrame({"template": ["{} in fog.", "{} in fog.", "{} {{odd}}."]}).to_parquet(dup)
    assert embed.read_pool(dup) == ["{} in fog.", "{} {{odd}}."]
    assert embed.fill("{} {{odd}}.", "bird") == "bird {{odd}}."   # braces kept: no str.format


def test_cli_writes_the_table(world, tmp_path, capsys):
    tmp, cfg, pools, out = world
    dest = tmp_path / "t.parquet"
    embed_main(["--dataset-config", json.dumps(cfg), "--pools", *pools, "--out", str(dest)])
    assert "embedded" in capsys.readouterr().out
    assert torch.equal(read_embeddings(dest).embeddings, read_embeddings(out).embeddings)
