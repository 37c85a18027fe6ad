"""Fine-tune stage on the tiny world: methods, heads, checkpoints, resume, NaN stop, 2-process DDP."""

import contextlib
import copy
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

from helpers import CLASSNAMES, interrupt_after_first_epoch, run_cfg, tiny_world
from stages import datasets
from stages.method.teacher_text import read_embeddings
from stages.finetune import distributed
from stages.finetune import loop as loop_mod     # compute_loss: patched where the loop looks it up
from stages.finetune.captions import Captions, zeroshot_class_weights
from stages.finetune.step import Student, TeacherImages, compute_loss, prepare_batch
from stages.finetune.train import train
from stages.finetune.trainset import (DecodedCache, EpochSampler, SeededCropTransform, TrainSet, crop_params,
                                     draw_template)
from stages.finetune import probe
from stages.finetune.runs import FinetuneConfigError, RunConfig, check, check_schedule, run_config
from stages.method.registry import METHODS
from stages.method.models import load_clip
from stages.method.zeroshot import LinearHead, zeroshot_weights

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

    def _go(method, out, seed=0, keep_resume=False, on_epoch=None, **overrides):
        return train(cfg, run_cfg(cfg["finetune"], method, **overrides), seed, emb, out, progress=False,
                     keep_resume=keep_resume, on_epoch=on_epoch)
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
    # a variant's base method comes from the registry (the schema does not list them)
    with pytest.raises(FinetuneConfigError, match=r"x\.finetune\.variants\.v\.method: 'stafrt' is not a method"):
        check({**ft, "variants": {"v": {"method": "stafrt"}}}, "x.finetune")
    with pytest.raises(FinetuneConfigError, match=r"variants\.v\.method: 'zeroshot' is not a method that trains"):
        check({**ft, "variants": {"v": {"method": "zeroshot"}}})


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
    images = datasets.open("waterbirds", cfg["data"]["root"], "train").dataset
    rows = torch.arange(14).view(2, 7)
    ts = TrainSet(images, SeededCropTransform(clip.model, (0.5, 1.0)), seed=3, spurious_rows=rows)
    a, b, c = ts[(0, 5)], ts[(0, 5)], ts[(1, 5)]
    assert torch.equal(a[0], b[0]) and a[3] == b[3]
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (3, 32, 32) and a[3] in rows[a[1]].tolist()
    draws = {ts[(e, 0)][3] for e in range(40)}
    assert len(draws) > 3           # the caption is drawn anew every epoch


def test_decoded_cache_serves_the_same_items_and_keeps_to_its_budget(world):
    tmp, cfg, emb = world
    clip = load_clip(cfg["model"]["name"])
    images = datasets.open("waterbirds", cfg["data"]["root"], "train").dataset
    image_bytes = 32 * 32 * 3
    cached = DecodedCache(images, max_bytes=3 * image_bytes)
    transform = SeededCropTransform(clip.model, (0.5, 1.0))
    plain, through = TrainSet(images, transform, 3, None), TrainSet(cached, transform, 3, None)
    for epoch in (0, 1):
        for i in range(5):
            a, b = plain[(epoch, i)], through[(epoch, i)]
            assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    assert sorted(cached.items) == [0, 1, 2]      # the first three fill the budget
    assert cached[0] is cached[0] and cached[4] is not cached[4]


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
    captions = Captions.build(e, clip.tokenizer, CLASSNAMES, run_cfg(cfg["finetune"], "starft"), emb, True)
    assert captions.spurious_rows.shape == (2, 7)    # 5 + 3 templates, one shared by both pools
    y = torch.tensor([0, 0, 1, 1, 0, 1])
    spurious = captions.spurious_rows[y, torch.tensor([0, 0, 2, 2, 1, 2])]
    raw = (torch.zeros(6, 3, 32, 32), y, torch.arange(6), spurious)
    batch = prepare_batch(raw, captions, METHODS["starft"], torch.device("cpu"))
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
    from_table = zeroshot_class_weights(read_embeddings(emb), templates, 2, emb)
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

    grid = [1e-4, 1e-3, 1e-2]
    go("lp", tmp / "lp", lp_l2_grid=grid)
    lp = load(tmp / "lp" / "checkpoint.pt")
    assert all(torch.equal(lp["model"][k], v) for k, v in teacher.items())     # the encoder is frozen
    # one converged fit per strength; the kept one has the best held-out accuracy (ties: stronger L2)
    fits = lp["probe"]["fits"]
    assert [f["l2"] for f in fits] == grid and all(f["converged"] for f in fits)
    best = max(fits, key=lambda f: (f["holdout_accuracy"], f["l2"]))
    assert lp["probe"]["l2"] == best["l2"]
    # fitted in the run (no probe file): the record says so, and which training images chose the L2
    assert lp["probe"]["file"] is None and lp["probe"]["holdout"]["split"] == "train"
    labels = np.arange(16) % 2                  # tests/helpers.make_dataset: y = k % 2
    fit_idx, held = probe.holdout_split(labels)
    assert lp["probe"]["holdout"]["indices_sha256"] == probe.indices_hash(held) and len(held) == 2
    # the stored head is the minimiser of its objective on the fit's features (the training split
    # without the held-out slice, stored as float16): zero gradient. L-BFGS stops at a largest
    # gradient entry of 1e-6 in float64; storing the head in float32 moves W (entries up to ~tau0 =
    # 14) by ~1e-6, which moves the gradient by less than that again (the Hessian of the mean
    # cross-entropy on unit features is below 1 + l2): 1e-4 is safe.
    clip = load_clip(cfg["model"]["name"])
    from stages.method.zeroshot import encode_images
    loader = torch.utils.data.DataLoader(datasets.open("waterbirds", cfg["data"]["root"], "train", clip.preprocess_val).dataset, batch_size=16)
    feats, y, _ = encode_images(clip.model.eval(), loader, torch.device("cpu"))
    assert torch.equal(y, torch.as_tensor(labels))
    feats = feats[fit_idx].half().double()
    w = lp["head"]["linear.weight"].double().requires_grad_(True)
    b = lp["head"]["linear.bias"].double().requires_grad_(True)
    loss, _ = probe.objective(w, b, feats, y[fit_idx], best["l2"])
    assert max(float(g.abs().max()) for g in torch.autograd.grad(loss, [w, b])) < 1e-4
    log = pd.read_csv(tmp / "lp" / "train_log.csv")
    assert list(log["l2"]) == grid and log["holdout_accuracy"].notna().all()


def test_probe_is_the_minimum_of_the_regularised_logistic_loss():
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(200, 8, generator=g, dtype=torch.float64), dim=-1)
    y = (feats[:, 0] + 0.3 * torch.randn(200, generator=g, dtype=torch.float64) > 0).long()
    w0, b0 = torch.zeros(2, 8, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    w, b, info = probe.fit_logistic(feats, y, w0, b0, l2=1e-2)
    assert info["grad_max"] <= probe.TOLERANCE * 10
    # strictly convex up to a common bias shift: every small step away from the solution costs (it
    # is the minimum), and the classifier does not depend on the start
    at = probe.objective(w, b, feats, y, 1e-2)[0]
    for _ in range(20):
        dw, db = 1e-3 * torch.randn(w.shape, generator=g, dtype=w.dtype), 1e-3 * torch.randn(2, generator=g, dtype=w.dtype)
        assert probe.objective(w + dw, b + db, feats, y, 1e-2)[0] > at
    w2, b2, _ = probe.fit_logistic(feats, y, 50 * torch.randn(2, 8, generator=g, dtype=torch.float64), b0 + 3, l2=1e-2)
    assert torch.allclose(w, w2, atol=1e-5) and torch.allclose(b - b.mean(), b2 - b2.mean(), atol=1e-5)
    # the grid keeps the strength with the best held-out accuracy: a huge L2 gives a near-zero W
    best, fits = probe.fit_probe(feats[:150], y[:150], feats[150:], y[150:], w0, b0, [1e-3, 1e3])
    assert best.l2 == max(fits, key=lambda f: (f.holdout_accuracy, f.l2)).l2
    assert fits[1].weight.abs().max() < fits[0].weight.abs().max() / 100


# ---------------------------------------------------------------------------------------------
# Training runs


REGULARISED = {"flyp_kl": "flyp", "starft": "flyp", "starft_ce": "ft"}   # method -> the same without regulariser


@pytest.mark.parametrize("method", ["ft", "flyp", "lpft", "flyp_kl", "starft", "starft_ce"])
def test_method_trains_and_writes_checkpoint_and_log(world, go, method):
    tmp, cfg, emb = world
    out = tmp / "m" / method
    # constant lambda: with one diminishing epoch lambda would be 0 and the regulariser untested
    go(method, out, epochs=1, schedule="constant")
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
    assert (ft["lambda"] == (0.5 if METHODS[method].regularizer else 0.0)).all()
    if method in REGULARISED:
        # The regulariser acts: after the first step (where student = teacher and its gradient is
        # exactly 0) it is positive and the weights leave those of the same run without it.
        assert ft["regularizer"].iloc[-1] > 0
        base_out = tmp / "m" / REGULARISED[method]
        if not (base_out / "checkpoint.pt").exists():
            # run alone or before it (bench/mutation.sh runs a subset of tests, in any order)
            go(REGULARISED[method], base_out, epochs=1, schedule="constant")
        base = load(base_out / "checkpoint.pt")
        key = "visual.transformer.resblocks.0.mlp.c_fc.weight"
        assert (ckpt["model"][key] - base["model"][key]).abs().max() > 1e-6

    teacher = load_clip(cfg["model"]["name"]).model.state_dict()
    text_key, image_key = "transformer.resblocks.0.mlp.c_fc.weight", "visual.transformer.resblocks.0.mlp.c_fc.weight"
    assert not torch.equal(ckpt["model"][image_key], teacher[image_key])
    text_trained = METHODS[method].objective == "flyp" or METHODS[method].regularizer is not None
    assert torch.equal(ckpt["model"][text_key], teacher[text_key]) != text_trained


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(world, go):
    tmp, cfg, emb = world
    go("starft", tmp / "whole", epochs=3)
    interrupt_after_first_epoch(go, "starft", tmp / "cut", epochs=3)
    assert load(tmp / "cut" / "resume.pt")["epoch"] == 1 and not (tmp / "cut" / "checkpoint.pt").exists()
    go("starft", tmp / "cut", epochs=3)

    a, b = load(tmp / "whole" / "checkpoint.pt"), load(tmp / "cut" / "checkpoint.pt")
    assert a["step"] == b["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    pd.testing.assert_frame_equal(pd.read_csv(tmp / "whole" / "train_log.csv").drop(columns="images_per_s"),
                                  pd.read_csv(tmp / "cut" / "train_log.csv").drop(columns="images_per_s"))


def test_a_job_failed_after_its_checkpoint_resumes_at_the_last_epoch(world, go, capsys):
    """The workflow's form (keep_resume, resume.pt removed by the rule once the job succeeded): a
    job its scheduler marks failed after the stage finished has its outputs removed by Snakemake;
    the retry must rebuild the same checkpoint from resume.pt without training again."""
    tmp, cfg, emb = world
    out = tmp / "kept"
    r = go("flyp", out, epochs=2, keep_resume=True)
    first = load(out / "checkpoint.pt")
    assert load(out / "resume.pt")["epoch"] == 2 and r["steps"] == 4
    log = pd.read_csv(out / "train_log.csv")
    for name in ("checkpoint.pt", "train_log.csv"):     # what Snakemake removes of a failed job
        (out / name).unlink()
    capsys.readouterr()
    r = go("flyp", out, epochs=2, keep_resume=True)
    assert "(epoch 2/2)" in capsys.readouterr().err and r["steps"] == 4
    again = load(out / "checkpoint.pt")
    assert again["step"] == first["step"] and again["epoch"] == first["epoch"]
    for k, v in first["model"].items():
        assert torch.equal(v, again["model"][k]), k
    pd.testing.assert_frame_equal(pd.read_csv(out / "train_log.csv"), log)   # no step trained twice


def test_resume_from_another_configuration_starts_afresh(world, go, capsys):
    tmp, cfg, emb = world
    out = tmp / "changed"
    interrupt_after_first_epoch(go, "flyp", out, epochs=2)
    r = go("flyp", out, epochs=2, lr=5e-5)
    assert "starting afresh" in capsys.readouterr().err and r["steps"] == 4


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(world, go, monkeypatch):
    tmp, cfg, emb = world
    real = loop_mod.compute_loss
    calls = []

    def poisoned(*args, **kwargs):
        loss = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 4:               # step 3, in the second epoch
            loss = loss._replace(total=loss.total * float("nan"))
        return loss

    monkeypatch.setattr(loop_mod, "compute_loss", poisoned)
    out = tmp / "nan"
    with pytest.raises(loop_mod.NonFiniteLossError, match=r"non-finite loss at step 3 \(epoch 1.*resume\.pt"):
        go("starft", out, epochs=3)
    assert not (out / "checkpoint.pt").exists()
    kept = load(out / "resume.pt")
    assert kept["epoch"] == 1 and all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_without_augmentation_teacher_images_are_encoded_once(world, go, monkeypatch):
    tmp, cfg, emb = world
    seen = []
    real = TeacherImages.__call__

    def counting(self, images, index):
        before = int(self.filled.sum()) if self.cache else None
        out = real(self, images, index)
        seen.append((self.cache, before))
        return out

    monkeypatch.setattr(TeacherImages, "__call__", counting)
    go("starft", tmp / "noaug", epochs=3, augment=False)
    assert all(cache for cache, _ in seen) and len(seen) == 6
    assert [b for _, b in seen][2:] == [16] * 4          # after epoch 1 every image is cached


def test_cli_with_config_file_and_set(world, tmp_path):
    tmp, cfg, emb = world
    config = tmp_path / "c.yaml"
    from helpers import config as tiny_config
    config.write_text(yaml.safe_dump(tiny_config(cfg["data"]["root"], cfg["model"]["name"])))
    from stages.finetune.__main__ import main
    main(["--config", str(config), "--experiment", "tiny", "--method", "starft", "--seed", "1", "--embeddings", emb,
          "--out-dir", str(tmp_path / "run"), "--set", "lambda=2", "--set", "epochs=1", "--no-progress"])
    ckpt = load(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["config"]["lambda"] == 2 and ckpt["seed"] == 1 and ckpt["epoch"] == 1
    with pytest.raises(SystemExit, match="--set 'lamda=2'"):
        main(["--config", str(config), "--experiment", "tiny", "--method", "starft", "--seed", "1", "--embeddings", emb,
              "--out-dir", str(tmp_path / "run"), "--set", "lamda=2"])


def test_set_overrides_are_checked_against_the_schema(world, tmp_path):
    tmp, cfg, emb = world
    from stages.finetune.__main__ import main
    base = ["--dataset-config", json.dumps(cfg), "--method", "starft", "--seed", "0", "--embeddings", emb,
            "--out-dir", str(tmp_path / "run"), "--no-progress"]
    with pytest.raises(SystemExit, match=r"finetune\.lr: 'abc' is not of type 'number'"):
        main([*base, "--set", "lr=abc"])
    with pytest.raises(SystemExit, match=r"finetune\.epochs: 0 is less than the minimum of 1"):
        main([*base, "--set", "epochs=0"])
    with pytest.raises(SystemExit, match=r"finetune\.select: 'best' is not one of"):
        main([*base, "--set", "select=best"])
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    with pytest.raises(FinetuneConfigError, match="epochs"):     # the same check for a run's configuration
        run_cfg(cfg["finetune"], "flyp", epochs=0)


def test_a_warmup_as_long_as_the_run_is_refused_naming_both_numbers():
    def rc(**changes):
        return RunConfig.from_dict({"name": "flyp", "method": "flyp", "batch_size": 512, "epochs": 10,
                                    "warmup_steps": 500, **changes})
    with pytest.raises(FinetuneConfigError, match=r"warmup_steps=500 is not shorter than the run of flyp: 4795 "
                                                  r"training images / batch 512 = 9 steps per epoch x 10 epochs = 90 steps"):
        check_schedule(rc(), 4795)
    assert check_schedule(rc(batch_size=128, warmup_steps=37), 4795) == 370
    assert check_schedule(rc(batch_size=128, warmup_steps=37), 4795, world_size=4) == 370
    with pytest.raises(FinetuneConfigError, match="not divisible by the 3 processes"):
        check_schedule(rc(batch_size=128), 4795, world_size=3)


def test_spurious_captions_are_drawn_by_type_then_template(world):
    tmp, cfg, emb = world
    e = read_embeddings(emb)
    clip = load_clip(cfg["model"]["name"])
    by_type = Captions.build(e, clip.tokenizer, CLASSNAMES, run_cfg(cfg["finetune"], "starft"), emb, True)
    pooled = Captions.build(e, clip.tokenizer, CLASSNAMES,
                            run_cfg(cfg["finetune"], "starft", spurious_sampling="all_templates"), emb, True)
    assert pooled.spurious_groups is None
    # 5 background templates, 3 texture ones, one of them shared with background (column 1)
    assert by_type.spurious_groups == [[0, 1, 2, 3, 4], [1, 5, 6]]
    rng = np.random.default_rng(0)
    n = 20000
    draws = np.array([draw_template(rng, 7, by_type.spurious_groups) for _ in range(n)])
    texture_only = np.isin(draws, [5, 6]).mean()          # each type half the time: 2/3 of 1/2
    assert texture_only == pytest.approx(1 / 3, abs=0.02)  # 5 sigma of a binomial with n = 20000
    pooled_draws = np.array([draw_template(rng, 7, None) for _ in range(n)])
    assert np.isin(pooled_draws, [5, 6]).mean() == pytest.approx(2 / 7, abs=0.02)
    one_pool = Captions.build(e, clip.tokenizer, CLASSNAMES, run_cfg(cfg["finetune"], "starft", spurious_types=["texture"]),
                              emb, True)
    assert one_pool.spurious_rows.shape == (2, 3) and one_pool.spurious_groups == [[0, 1, 2]]


def test_kl_scale_chooses_the_students_logit_scale(world):
    tmp, cfg, emb = world
    e = read_embeddings(emb)
    clip = load_clip(cfg["model"]["name"])
    teacher = clip.model.eval().requires_grad_(False)
    tau0 = float(teacher.logit_scale.exp())
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.logit_scale.fill_(float(np.log(3 * tau0)))
        student.visual.proj.mul_(1.1)
    captions = Captions.build(e, clip.tokenizer, CLASSNAMES, run_cfg(cfg["finetune"], "flyp_kl"), emb, True)
    y = torch.tensor([0, 1, 0, 1])
    raw = (torch.randn(4, 3, 32, 32), y, torch.arange(4), captions.spurious_rows[y, torch.tensor([0, 1, 2, 3])])
    batch = prepare_batch(raw, captions, METHODS["flyp_kl"], torch.device("cpu"))
    ctx = distributed.Context()
    regs = {}
    for kl_scale in ("student", "teacher"):
        regs[kl_scale] = compute_loss(Student(student, None), TeacherImages(teacher, 4, False),
                                      e.embeddings, tau0, METHODS["flyp_kl"], batch, 1.0, ctx,
                                      contextlib.nullcontext, kl_scale).regularizer
    with torch.no_grad():
        f = torch.nn.functional.normalize(student.encode_image(raw[0]), dim=-1)
        f0 = torch.nn.functional.normalize(teacher.encode_image(raw[0]), dim=-1)
        g = torch.nn.functional.normalize(student.encode_text(captions.tokens[raw[3]]), dim=-1)
    from stages.method.losses import kl_regularizer
    t = e.embeddings[raw[3]]
    assert float(regs["student"]) == pytest.approx(float(kl_regularizer(f, g, f0, t, tau0, 3 * tau0)), rel=1e-4)
    assert float(regs["teacher"]) == pytest.approx(float(kl_regularizer(f, g, f0, t, tau0)), rel=1e-4)
    assert abs(float(regs["student"]) - float(regs["teacher"])) > 1e-3 * float(regs["teacher"])


def test_select_val_worst_group_keeps_the_best_epoch(world, go):
    tmp, cfg, emb = world
    r = go("flyp", tmp / "sel", epochs=3, lr=1e-3, select="val_worst_group")
    ckpt = load(tmp / "sel" / "checkpoint.pt")
    sel = ckpt["selected"]
    history = [h["val_worst_group"] for h in sel["history"]]
    assert len(history) == 3 and sel["rule"] == "val_worst_group" and r["selected"] == sel
    assert sel["epoch"] == 1 + int(np.argmax(history)) and sel["val_worst_group"] == max(history)
    # the stored weights score what the selection recorded, scored as the evaluate stage scores them
    from helpers import eval_config
    from stages import datasets
    from stages.evaluate import run as evaluate
    data_check = datasets.check("tiny", "waterbirds", cfg["data"]["root"], templates=cfg["evaluate"]["templates"])
    m = evaluate.run(eval_config(cfg, splits=["val"]), {"tiny": data_check}, "flyp", 0,
                     str(tmp / "sel" / "checkpoint.pt"))["tiny"]
    assert m["splits"]["val"]["worst_group"] == pytest.approx(sel["val_worst_group"])
    assert m["selected"]["epoch"] == sel["epoch"] and m["precision"] == "auto"   # the run's own precision
    log = pd.read_csv(tmp / "sel" / "train_log.csv")
    assert log["val_worst_group"].dropna().tolist() == pytest.approx(history)


def test_resume_with_changed_pools_starts_afresh(world, go, capsys, tmp_path):
    tmp, cfg, emb = world
    from helpers import POOLS, make_pools
    from stages.embed import run as embed
    other = tmp_path / "other.parquet"
    embed.run(cfg, make_pools(tmp_path / "pools", {**POOLS, "texture": ["a photo of a striped {}."]}), other)
    interrupt_after_first_epoch(go, "starft", tmp_path / "run", epochs=2)
    capsys.readouterr()
    r = train(cfg, run_cfg(cfg["finetune"], "starft", epochs=2), 0, str(other), tmp_path / "run", progress=False)
    assert "inputs (spurious pools" in capsys.readouterr().err and r["steps"] == 4


# ---------------------------------------------------------------------------------------------
# Several processes: torchrun + gloo on CPU


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    launch = [sys.executable] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    proc = subprocess.run([*launch, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_processes_give_the_one_process_gradient(world, tmp_path):
    """DDP + the gathered losses give the one-process loss and gradient of the same global batch.

    tests/ddp_step.py runs one real step (StarFT, the unmasked KL, StarFT with CE) in float64. The
    two computations differ only in summation order: relative differences of ~1e-15 per sum, ~1e-13
    after a few hundred terms. A tolerance of 1e-9 of the largest gradient entry leaves a wide
    margin on any CPU, yet a wrong gather (another batch or order) or a missing all-reduce (each
    rank's gradient of its own half) changes the gradient by a large fraction of its size.
    """
    tmp, cfg, emb = world
    args = ["tests/ddp_step.py", "--dataset-config", json.dumps(cfg), "--embeddings", emb]
    _torchrun(1, *args, "--out", str(tmp_path / "one.pt"))
    _torchrun(2, *args, "--out", str(tmp_path / "two.pt"))
    one, two = load(tmp_path / "one.pt"), load(tmp_path / "two.pt")
    for method, a in one.items():
        b = two[method]
        assert a["regularizer"] > 1e-6, method          # the student is off its teacher
        assert torch.allclose(a["loss"], b["loss"], rtol=1e-12, atol=0), method
        assert torch.allclose(a["regularizer"], b["regularizer"], rtol=1e-10, atol=0), method
        scale = max(float(g.abs().max()) for g in a["grads"].values())
        assert scale > 0 and set(a["grads"]) == set(b["grads"])
        for name, g in a["grads"].items():
            assert g.dtype == torch.float64
            assert torch.allclose(g, b["grads"][name], rtol=1e-9, atol=1e-9 * scale), (method, name)


def test_torchrun_run_writes_the_same_run_as_one_process(world, tmp_path):
    """The CLI under torchrun (gloo, 2 processes) trains the same run: same steps, same first loss.

    Only the first step is compared exactly (float32, before any update: the same global batch,
    so the same loss up to summation order, ~1e-7 relative). Later steps are not: Adam divides
    gradients by their running RMS, so parameters whose gradient is ~0 (e.g. the attention key
    biases, which softmax ignores) move by up to +-lr on rounding noise alone, and the runs drift
    apart at a rate that depends on the CPU. Equality of the gradient itself is the test above.
    """
    tmp, cfg, emb = world
    rc = run_cfg(cfg["finetune"], "starft", epochs=2)               # the first epoch has lambda_0 = 0.25
    args = ["-m", "stages.finetune", "--dataset-config", json.dumps(cfg), "--run-config", json.dumps(rc.as_dict()),
            "--method", "starft", "--seed", "0", "--embeddings", emb, "--no-progress"]
    _torchrun(2, *args, "--out-dir", str(tmp_path / "two"))
    train(cfg, rc, 0, emb, tmp_path / "one", progress=False)
    a, b = load(tmp_path / "one" / "checkpoint.pt"), load(tmp_path / "two" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4 and a["inputs"] == b["inputs"]
    assert all(torch.isfinite(v).all() for v in b["model"].values() if v.is_floating_point())
    la, lb = pd.read_csv(tmp_path / "one" / "train_log.csv"), pd.read_csv(tmp_path / "two" / "train_log.csv")
    assert len(la) == len(lb) == 4
    assert la["loss"].iloc[0] == pytest.approx(lb["loss"].iloc[0], rel=1e-5)


def test_device_decode_trains_on_the_same_batches(world, go):
    """decode: device reads bytes in the loader and decodes and crops in the training process: the
    same samples, crop boxes and captions as the PIL path. The tiny world's images are PNGs (no
    decoder difference), so the inputs differ only by the resize arithmetic (PIL's fixed-point
    kernel vs torch's float one, <= 1 grey level, ~0.016 in normalised units), which moves the
    first loss (before any update) by a small fraction of itself."""
    tmp, cfg, emb = world
    cpu = go("starft", tmp / "dec_cpu", epochs=1)
    dev = go("starft", tmp / "dec_dev", epochs=1, decode="device")
    assert dev["steps"] == cpu["steps"] == 2
    first = lambda r: r["log"][0]   # noqa: E731
    assert first(dev)["loss"] == pytest.approx(first(cpu)["loss"], rel=1e-2)
    assert first(dev)["regularizer"] == pytest.approx(first(cpu)["regularizer"], rel=5e-2, abs=1e-6)
    assert load(tmp / "dec_dev" / "checkpoint.pt")["config"]["decode"] == "device"
