"""Fine-tune stage on the tiny world: methods, heads, checkpoints, resume, NaN stop, 2-process DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from helpers import CLASSNAMES, tiny_world
from stages.embed import read_embeddings
from stages.finetune import train as train_mod
from stages.finetune.data import EpochSampler, SeededCropTransform, TrainSet, crop_params
from stages.finetune.methods import METHODS, FinetuneConfigError, check, run_config
from stages.models import load_clip
from stages.zeroshot import LinearHead, zeroshot_weights

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("ft")
    cfg, emb = tiny_world(tmp)      # 16 training images, batch 8: 2 steps per epoch
    return tmp, cfg, emb


@pytest.fixture
def go(world):
    tmp, cfg, emb = world

    def _go(method, out, seed=0, **overrides):
        rc = run_config(cfg["finetune"], method)
        rc.update(overrides)
        return train_mod.train(cfg, rc, seed, emb, out, progress=False)
    return _go


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


# ---------------------------------------------------------------------------------------------
# Configuration


def test_run_config_resolves_methods_and_variants():
    ft = {"epochs": 5, "lambda": 0.5, "lr": 1e-4, "methods": ["flyp", "star_strong"], "seeds": [0],
          "variants": {"star_strong": {"method": "starft", "lambda": 50.0}}, "wiseft_of": "ft"}
    assert run_config(ft, "flyp") == {"epochs": 5, "lambda": 0.5, "lr": 1e-4, "name": "flyp", "method": "flyp"}
    assert run_config(ft, "star_strong")["lambda"] == 50.0 and run_config(ft, "star_strong")["method"] == "starft"
    assert run_config(ft, "star_strong")["epochs"] == 5
    with pytest.raises(FinetuneConfigError, match="wiseft_of"):
        run_config(ft, "wiseft")
    with pytest.raises(FinetuneConfigError, match="unknown method 'flpy'"):
        run_config(ft, "flpy")
    check(ft)
    with pytest.raises(FinetuneConfigError, match=r"x\.finetune\.methods: unknown method 'flpy'"):
        check({**ft, "methods": ["flpy"]}, "x.finetune")
    with pytest.raises(FinetuneConfigError, match="wiseft_of"):
        check({**ft, "wiseft_of": "zeroshot"})


# ---------------------------------------------------------------------------------------------
# Data: seeded augmentation and caption draws, rank slicing


def test_crop_params_stay_inside_the_image():
    rng = np.random.default_rng(0)
    for _ in range(200):
        w, h = rng.integers(8, 80, 2)
        i, j, ch, cw = crop_params(int(w), int(h), (0.08, 1.0), rng)
        assert 0 <= i and 0 <= j and 0 < ch and 0 < cw and i + ch <= h and j + cw <= w


def test_items_are_a_function_of_seed_epoch_and_index(world):
    tmp, cfg, emb = world
    clip = load_clip(cfg["model"]["name"])
    from stages.data import GroupDataset
    images = GroupDataset(cfg["data"]["root"], "train")
    rows = torch.arange(14).view(2, 7)
    ts = TrainSet(images, SeededCropTransform(clip.model, (0.5, 1.0)), seed=3, spurious_rows=rows)
    a, b, c = ts[(0, 5)], ts[(0, 5)], ts[(1, 5)]
    assert torch.equal(a[0], b[0]) and a[3] == b[3]
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (3, 32, 32) and a[3] in rows[a[1]].tolist()
    draws = {ts[(e, 0)][3] for e in range(40)}
    assert len(draws) > 3           # the caption is drawn anew every epoch


def test_ranks_together_hold_the_one_process_batches():
    data = list(range(16))
    one = list(torch.utils.data.DataLoader(data, batch_size=8, drop_last=True,
                                           sampler=_plain(EpochSampler(data, num_replicas=1, rank=0, seed=4))))
    ranks = [list(torch.utils.data.DataLoader(data, batch_size=4, drop_last=True,
                                              sampler=_plain(EpochSampler(data, num_replicas=2, rank=r, seed=4))))
             for r in range(2)]
    for k, batch in enumerate(one):
        assert sorted(batch.tolist()) == sorted(ranks[0][k].tolist() + ranks[1][k].tolist())


def _plain(sampler):
    sampler.set_epoch(2)
    return [i for _, i in sampler]


def test_student_text_encoder_sees_each_distinct_caption_once(world):
    tmp, cfg, emb = world
    e = read_embeddings(emb)
    clip = load_clip(cfg["model"]["name"])
    captions = train_mod.Captions.build(e, clip.tokenizer, CLASSNAMES, run_config(cfg["finetune"], "starft"), emb, True)
    assert captions.spurious_rows.shape == (2, 7)    # 5 + 3 templates, one shared by both pools
    y = torch.tensor([0, 0, 1, 1, 0, 1])
    spurious = captions.spurious_rows[y, torch.tensor([0, 0, 2, 2, 1, 2])]
    raw = (torch.zeros(6, 3, 32, 32), y, torch.arange(6), spurious)
    batch = train_mod.prepare_batch(raw, captions, METHODS["starft"], torch.device("cpu"))
    assert len(batch.tokens) == 2 + 3                # 2 class captions + 3 distinct spurious captions
    texts = e.table["text"].tolist()
    tokens = captions.tokens
    for pos, row in enumerate(torch.cat([captions.caption_row[y], spurious]).tolist()):
        assert torch.equal(batch.tokens[batch.inverse[pos]], tokens[row]), texts[row]


# ---------------------------------------------------------------------------------------------
# Heads


def test_zeroshot_head_from_the_table_is_the_zeroshot_classifier(world):
    tmp, cfg, emb = world
    clip = load_clip(cfg["model"]["name"])
    templates = cfg["evaluate"]["templates"]
    from_table = train_mod.zeroshot_class_weights(read_embeddings(emb), templates, 2, emb)
    direct = zeroshot_weights(clip.model.eval(), clip.tokenizer, CLASSNAMES, templates, torch.device("cpu"))
    assert torch.allclose(from_table, direct, atol=1e-6)
    feats = torch.nn.functional.normalize(torch.randn(50, 32), dim=-1)
    head = LinearHead(from_table, 14.0)
    assert torch.equal(head(feats).argmax(1), (feats @ direct.T).argmax(1))


def test_zeroshot_and_linear_probe_runs(world, go):
    tmp, cfg, emb = world
    teacher = load_clip(cfg["model"]["name"]).model.state_dict()
    go("zeroshot", tmp / "zs")
    zs = load(tmp / "zs" / "checkpoint.pt")
    assert zs["head"] is None and zs["epoch"] == 0
    assert all(torch.equal(zs["model"][k], v) for k, v in teacher.items())

    r = go("lp", tmp / "lp", lp_epochs=20, lp_lr=1e-2)
    lp = load(tmp / "lp" / "checkpoint.pt")
    assert all(torch.equal(lp["model"][k], v) for k, v in teacher.items())     # the encoder is frozen
    init = 14.285714 * train_mod.zeroshot_class_weights(read_embeddings(emb), cfg["evaluate"]["templates"], 2, emb)
    assert not torch.allclose(lp["head"]["linear.weight"], init, atol=1e-3)
    losses = [row["loss"] for row in r["log"]]
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------------------------------------
# Training runs


@pytest.mark.parametrize("method", ["ft", "lpft", "flyp", "flyp_kl", "starft", "starft_ce"])
def test_method_trains_and_writes_checkpoint_and_log(world, go, method):
    tmp, cfg, emb = world
    out = tmp / "m" / method
    go(method, out, epochs=1)
    ckpt = load(out / "checkpoint.pt")
    assert {"model", "head", "method", "epoch", "config", "teacher", "step"} <= set(ckpt)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 2 and ckpt["method"] == method
    assert (ckpt["head"] is None) == (method in ("flyp", "flyp_kl", "starft"))
    assert not (out / "resume.pt").exists()
    log = pd.read_csv(out / "train_log.csv")
    assert {"step", "epoch", "loss", "regularizer", "lambda", "lr", "images_per_s"} <= set(log.columns)
    ft = log[log["phase"] == "ft"]
    assert len(ft) == 2 and np.isfinite(ft["loss"]).all()
    assert ft["regularizer"].notna().all() == (METHODS[method].regularizer is not None)

    teacher = load_clip(cfg["model"]["name"]).model.state_dict()
    text_key, image_key = "transformer.resblocks.0.mlp.c_fc.weight", "visual.transformer.resblocks.0.mlp.c_fc.weight"
    assert not torch.equal(ckpt["model"][image_key], teacher[image_key])
    text_trained = METHODS[method].objective == "flyp" or METHODS[method].regularizer is not None
    assert torch.equal(ckpt["model"][text_key], teacher[text_key]) != text_trained


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(world, go, monkeypatch):
    tmp, cfg, emb = world
    go("starft", tmp / "whole", epochs=3)

    real_save = train_mod.save

    def save_then_crash(path, state):
        real_save(path, state)
        if path.name == "resume.pt" and state["epoch"] == 1:
            raise KeyboardInterrupt("simulated interruption after epoch 1")

    monkeypatch.setattr(train_mod, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        go("starft", tmp / "cut", epochs=3)
    assert (tmp / "cut" / "resume.pt").exists() and not (tmp / "cut" / "checkpoint.pt").exists()
    monkeypatch.setattr(train_mod, "save", real_save)
    go("starft", tmp / "cut", epochs=3)

    a, b = load(tmp / "whole" / "checkpoint.pt"), load(tmp / "cut" / "checkpoint.pt")
    assert a["step"] == b["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    pd.testing.assert_frame_equal(pd.read_csv(tmp / "whole" / "train_log.csv").drop(columns="images_per_s"),
                                  pd.read_csv(tmp / "cut" / "train_log.csv").drop(columns="images_per_s"))


def test_resume_from_another_configuration_starts_afresh(world, go, monkeypatch, capsys):
    tmp, cfg, emb = world
    out = tmp / "changed"
    real_save = train_mod.save

    def save_then_crash(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        go("flyp", out, epochs=2)
    monkeypatch.setattr(train_mod, "save", real_save)
    r = go("flyp", out, epochs=2, lr=5e-5)
    assert "starting afresh" in capsys.readouterr().err and r["steps"] == 4


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(world, go, monkeypatch):
    tmp, cfg, emb = world
    real = train_mod.compute_loss
    calls = []

    def poisoned(*args, **kwargs):
        loss, loss_ft, reg, scale = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 4:               # step 3, in the second epoch
            loss = loss * float("nan")
        return loss, loss_ft, reg, scale

    monkeypatch.setattr(train_mod, "compute_loss", poisoned)
    out = tmp / "nan"
    with pytest.raises(train_mod.NonFiniteLossError, match=r"non-finite loss at step 3 \(epoch 1.*resume\.pt"):
        go("starft", out, epochs=3)
    assert not (out / "checkpoint.pt").exists()
    kept = load(out / "resume.pt")
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_without_augmentation_teacher_images_are_encoded_once(world, go, monkeypatch):
    tmp, cfg, emb = world
    seen = []
    real = train_mod.TeacherImages.__call__

    def counting(self, images, index):
        before = int(self.filled.sum()) if self.cache else None
        out = real(self, images, index)
        seen.append((self.cache, before))
        return out

    monkeypatch.setattr(train_mod.TeacherImages, "__call__", counting)
    go("starft", tmp / "noaug", epochs=3, augment=False)
    assert all(cache for cache, _ in seen) and len(seen) == 6
    assert [b for _, b in seen][2:] == [16] * 4          # after epoch 1 every image is cached


def test_cli_with_config_file_and_set(world, tmp_path):
    tmp, cfg, emb = world
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"tiny": {k: v for k, v in cfg.items()}}))
    from stages.finetune.__main__ import main
    main(["--config", str(config), "--dataset", "tiny", "--method", "starft", "--seed", "1", "--embeddings", emb,
          "--out-dir", str(tmp_path / "run"), "--set", "lambda=2", "--set", "epochs=1", "--no-progress"])
    ckpt = load(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["config"]["lambda"] == 2 and ckpt["seed"] == 1 and ckpt["epoch"] == 1
    with pytest.raises(SystemExit, match="--set 'lamda=2'"):
        main(["--config", str(config), "--dataset", "tiny", "--method", "starft", "--seed", "1", "--embeddings", emb,
              "--out-dir", str(tmp_path / "run"), "--set", "lamda=2"])


# ---------------------------------------------------------------------------------------------
# Several processes: torchrun + gloo on CPU


def test_two_processes_with_gloo_match_one_process(world, tmp_path):
    tmp, cfg, emb = world
    rc = run_config(cfg["finetune"], "starft")
    rc.update(epochs=2)               # the first epoch has lambda_0 = 0.25
    args = ["-m", "stages.finetune", "--dataset-config", json.dumps(cfg), "--run-config", json.dumps(rc),
            "--method", "starft", "--seed", "0", "--embeddings", emb, "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *args, "--out-dir", str(tmp_path / "two")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    train_mod.train(cfg, rc, 0, emb, tmp_path / "one", progress=False)
    a, b = load(tmp_path / "one" / "checkpoint.pt"), load(tmp_path / "two" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        w = b["model"][k]
        if k.endswith("attn.in_proj_bias"):
            # The key bias has a gradient of exactly 0 (softmax is shift-invariant), so in floating
            # point it is rounding noise, which Adam scales up to +-lr: compare q and v only.
            d = len(v) // 3
            v, w = torch.cat([v[:d], v[2 * d:]]), torch.cat([w[:d], w[2 * d:]])
        assert torch.allclose(v, w, atol=1e-6, rtol=1e-5), (k, (v - w).abs().max())
    la, lb = pd.read_csv(tmp_path / "one" / "train_log.csv"), pd.read_csv(tmp_path / "two" / "train_log.csv")
    assert np.allclose(la["loss"], lb["loss"], rtol=1e-5) and np.allclose(la["regularizer"], lb["regularizer"], rtol=1e-3, atol=1e-7)
