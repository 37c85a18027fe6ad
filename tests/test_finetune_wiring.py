"""The StarFT training step wired into a run (issue 22): the regulariser of a real batch against
the formula of docs/method.md, lambda's diminishing schedule in the log and the loss, a resumed run that
does not redo its first epoch, and `select: val_worst_group` keeping the best epoch's weights.

Expected values are computed here, from the formulas, not by the code under test.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers import TEMPLATES, interrupt_after_first_epoch, make_pools, make_tiny_clip, run_cfg, tiny_world
from stages import config as stage_config
from stages.finetune import distributed
from stages.finetune import loop as loop_mod            # compute_loss: looked up by the loop
from stages.finetune import selection as selection_mod  # val_metrics: looked up by Selection.after_epoch
from stages.finetune.setup import open_split, prepare, train_loader
from stages.finetune.step import Student, TeacherImages, compute_loss, prepare_batch
from stages.finetune.train import train
from stages.method.models import load_clip
from stages.method.teacher_text import read_embeddings


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


# ---------------------------------------------------------------------------------------------
# Worlds


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny Waterbirds-layout world of tests/helpers.py: 16 training images, batch 8."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("wiring")
    cfg, emb = tiny_world(tmp)
    return tmp, cfg, emb


@pytest.fixture
def go(world):
    tmp, cfg, emb = world

    def _go(method, out, seed=0, on_epoch=None, **overrides):
        return train(cfg, run_cfg(cfg["finetune"], method, **overrides), seed, emb, out, progress=False,
                     on_epoch=on_epoch)
    return _go


# Three classes of unequal sizes (7, 5, 4 training images), so that C = 3 differs from the 7
# distinct spurious templates of helpers.POOLS and same-class pairs are of several sizes.
CLASSES3 = {"heron": ((240, 240, 240), 7), "owl": ((120, 80, 40), 5), "sparrow": ((200, 160, 40), 4)}


def make_imagefolder(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, scale in (("train", 1), ("val", 0), ("test", 0)):
        for name, (colour, n) in CLASSES3.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(max(1, n * scale)):
                background = (90, 140, 60) if k % 2 else (60, 90, 170)
                pixels = np.array(background, dtype=np.float32) + rng.normal(0, 20, (32, 32, 3))
                x0, y0 = rng.integers(0, 16, 2)
                pixels[y0:y0 + 12, x0:x0 + 12] = colour
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{k:03d}.png")
    return root


@pytest.fixture(scope="module")
def world3(tmp_path_factory):
    """A 3-class ImageFolder world with the tiny CLIP; one batch of 16 = the whole training set."""
    from stages.embed import run as embed

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("wiring3")
    model = make_tiny_clip(tmp / "clip")
    root = make_imagefolder(tmp / "data")
    ft = {"epochs": 1, "batch_size": 16, "lr": 1e-4, "warmup_steps": 0, "lambda": 0.5,
          "num_workers": 0, "threads": 1, "device": "cpu", "log_every": 1}
    config = stage_config.validate({
        "datasets": {"three": {"reader": "imagefolder", "root": str(root), "classnames": list(CLASSES3),
                               "templates": TEMPLATES}},
        "experiments": {"three": {"train": "three", "model": {"name": model},
                                  "evaluate": {"device": "cpu", "batch_size": 16, "num_workers": 0},
                                  "finetune": ft}}})
    cfg = stage_config.train_job(config, "three")
    emb = tmp / "embeddings" / "teacher_text.parquet"
    embed.run(cfg, make_pools(tmp / "pools"), emb)
    return tmp, cfg, str(emb)


# ---------------------------------------------------------------------------------------------
# 1. The regulariser of a real training step


def explicit_star_regularizer(f, g, f0, g0, y, tau0):
    """docs/method.md's formula, float64, one row at a time: (1/B) sum_i KL(softmax_j T_ij || softmax_j S_ij)
    over the captions j of another class than y_i, T_ij = tau0 <f0(x_i), g0(s_j)>,
    S_ij = tau0 <f(x_i), g(s_j)>; a row with no other class in the batch contributes 0."""
    B = len(y)
    total = 0.0
    for i in range(B):
        others = [j for j in range(B) if y[j] != y[i]]
        if not others:
            continue
        t = torch.tensor([tau0 * float(f0[i] @ g0[j]) for j in others], dtype=torch.float64)
        s = torch.tensor([tau0 * float(f[i] @ g[j]) for j in others], dtype=torch.float64)
        p, log_p, log_q = t.softmax(0), t.log_softmax(0), s.log_softmax(0)
        total += float((p * (log_p - log_q)).sum())
    return total / B


def test_star_regularizer_of_a_real_step_is_the_formula_with_labels_and_teacher_scale(world3):
    """A real batch of the 3-class world (the whole training set: classes of 7, 5 and 4 samples)
    through prepare_batch and compute_loss, with the student moved off its teacher (seeded noise on
    every weight) and given a logit scale 3 x tau0, against the formula of docs/method.md in float64 with
    features recomputed here from copies of the two models (g0 included, from the captions' text).

    Tolerance: the step computes in float32 (CPU, no autocast), the reference in float64. The
    features (2-layer image / 1-layer text transformer of width 64) carry relative errors of a
    few 1e-7 (float32's 6e-8 times a few dozen roundings), so each logit tau0 * <f, g> (tau0 =
    14.3) is off by < 1e-4, and KL(p || softmax(S)) moves by at most sum_j |q_j - p_j| * max
    |dS| <= 2 max |dS| per row (likewise for T): < 4e-4 absolute, under 1e-3 x the value
    below (> 1). Same-class captions left in (the mask dropped) give 1.95 instead of 1.31 here,
    the student's scale in place of tau0 6.14 (measured when written).
    """
    tmp, cfg, emb = world3
    ctx = distributed.Context()
    rc = run_cfg(cfg["finetune"], "starft")
    run = prepare(cfg, rc, 0, Path(emb), tmp / "run", ctx, open_split(cfg, "train"))
    loader, sampler, to_batch = train_loader(run)
    sampler.set_epoch(0)
    raw = to_batch(next(iter(loader)))
    images, y, _, spurious = raw
    counts = torch.bincount(y, minlength=3).tolist()
    assert sorted(counts) == [4, 5, 7]            # every class, several samples of each: the mask matters

    tau0 = float(load_clip(cfg["model"]["name"]).model.logit_scale.detach().exp())   # the teacher's, read afresh
    assert run.tau0 == pytest.approx(tau0, rel=1e-6)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for name, p in run.student_clip.named_parameters():
            if name != "logit_scale":
                p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        run.student_clip.logit_scale.fill_(math.log(3 * tau0))

    batch = prepare_batch(raw, run.captions, run.method, ctx.device)
    loss, loss_ft, reg, scale, _ = compute_loss(Student(run.student_clip, run.head),
                                                TeacherImages(run.teacher, 16, False), run.teacher_text, run.tau0,
                                                run.method, batch, 0.5, ctx, run.autocast, rc.kl_scale)
    assert float(scale.detach()) == pytest.approx(3 * tau0, rel=1e-5)

    # The reference: each sample's spurious caption is one of its own class, encoded here in full.
    table = read_embeddings(emb).table
    rows = spurious.tolist()
    assert table["kind"].iloc[rows].eq("spurious").all()
    assert table["class_index"].iloc[rows].tolist() == y.tolist()
    tokens = run.clip.tokenizer(table["text"].iloc[rows].tolist())
    student, teacher = copy.deepcopy(run.student_clip).double(), copy.deepcopy(run.teacher).double()
    with torch.no_grad():
        f = F.normalize(student.encode_image(images.double()), dim=-1)
        g = F.normalize(student.encode_text(tokens), dim=-1)
        f0 = F.normalize(teacher.encode_image(images.double()), dim=-1)
        g0 = F.normalize(teacher.encode_text(tokens), dim=-1)
    want = explicit_star_regularizer(f, g, f0, g0, y.tolist(), tau0)
    assert want > 1.0
    assert float(reg.detach()) == pytest.approx(want, rel=1e-3)
    assert float(loss.detach()) == pytest.approx(float(loss_ft.detach()) + 0.5 * want, rel=1e-3)


def test_grad_checkpointing_keeps_the_loss_and_every_gradient(world3):
    """finetune.grad_checkpointing turns on open_clip's switch in both towers of the student, and a
    real StarFT step (the 3-class world's whole training set) gives the same loss and gradients.

    Tolerance: recomputation replays each block's forward on the same inputs with the same float32
    CPU kernels, so its activations are the very values the plain pass keeps (no dropout in CLIP;
    non-reentrant checkpointing restores the RNG anyway) and the backward sums the same terms in the
    same order: equal to float32's rounding. rtol 1e-6 (~8 ulps) admits only a reordered sum,
    nothing a wrong recomputation (a missing block, another input) could hide under.
    """
    tmp, cfg, emb = world3
    ctx = distributed.Context()
    losses, grads = [], []
    for on in (False, True):
        rc = run_cfg(cfg["finetune"], "starft", grad_checkpointing=on)
        run = prepare(cfg, rc, 0, Path(emb), tmp / f"checkpointing_{on}", ctx, open_split(cfg, "train"))
        assert run.student_clip.visual.transformer.grad_checkpointing is on
        assert run.student_clip.transformer.grad_checkpointing is on
        assert not run.teacher.transformer.grad_checkpointing   # the frozen teacher keeps no graph
        loader, sampler, to_batch = train_loader(run)
        sampler.set_epoch(0)
        batch = prepare_batch(to_batch(next(iter(loader))), run.captions, run.method, ctx.device)
        loss = compute_loss(Student(run.student_clip, run.head), TeacherImages(run.teacher, 16, False),
                            run.teacher_text, run.tau0, run.method, batch, 0.5, ctx, run.autocast, rc.kl_scale)[0]
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in run.student_clip.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=0)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20   # both towers' blocks
    for name in grads[0]:
        scale = float(grads[0][name].abs().max())
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-6, atol=1e-6 * scale, msg=name)


# ---------------------------------------------------------------------------------------------
# 2. lambda's diminishing schedule


def loss_calls(monkeypatch) -> list[dict]:
    """The arguments of every compute_loss call of the training loop, by name."""
    real, calls = loop_mod.compute_loss, []
    signature = inspect.signature(real)

    def recording(*args, **kwargs):
        calls.append(dict(signature.bind(*args, **kwargs).arguments))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "compute_loss", recording)
    return calls


def test_diminishing_lambda_is_logged_and_weighs_the_regulariser(world, go, monkeypatch):
    """3 epochs of 2 steps, lambda 0.6, `schedule: diminishing`: every step of epoch e (0-based)
    is given and logs lambda_e = 0.6 * (1 - (e + 1) / 3), and its loss is L_ft + lambda_e * L_star;
    the regulariser's scale is the teacher's tau0.

    The log holds one step per row (log_every 1); the loss is float32: loss = fl(L_ft +
    fl(fl(lambda_e) * L_star)), three roundings of relative size 2^-24 each, so |loss - (L_ft +
    lambda_e L_star)| <= 3 * 2^-24 * (|L_ft| + lambda_e |L_star|) (the CSV round-trips floats
    exactly); 8 * 2^-24 leaves a margin and is far below lambda's steps of 0.2 * L_star.
    """
    tmp, cfg, emb = world
    out = tmp / "diminishing"
    calls = loss_calls(monkeypatch)
    go("starft", out, epochs=3, schedule="diminishing", **{"lambda": 0.6})
    log = pd.read_csv(out / "train_log.csv")
    assert log["epoch"].tolist() == [0, 0, 1, 1, 2, 2]
    want = [0.6 * (1 - (e + 1) / 3) for e in log["epoch"]]
    assert log["lambda"].tolist() == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert [c["lam"] for c in calls] == pytest.approx(want, rel=1e-12, abs=1e-15)
    tau0 = float(load_clip(cfg["model"]["name"]).model.logit_scale.detach().exp())
    assert all(float(c["tau0"]) == pytest.approx(tau0, rel=1e-6) for c in calls)
    assert log["regularizer"].iloc[1:].min() > 1e-4          # after step 1 the student is off its teacher
    for _, row in log.iterrows():
        lam = 0.6 * (1 - (row["epoch"] + 1) / 3)
        bound = 8 * 2.0 ** -24 * (abs(row["loss_ft"]) + lam * abs(row["regularizer"]))
        assert abs(row["loss"] - (row["loss_ft"] + lam * row["regularizer"])) <= bound, row.to_dict()


# ---------------------------------------------------------------------------------------------
# 3. Resume


def test_a_resumed_run_says_so_and_trains_only_the_remaining_epochs(world, go, monkeypatch, capsys):
    """An interrupted 3-epoch run, started again, resumes: it prints its "resuming" line, takes
    the 4 steps of epochs 2 and 3 only (with their lambdas 0.5 * (1 - 2/3) and 0), and its log keeps the
    first epoch's rows as written before the interruption."""
    tmp, cfg, emb = world
    out = tmp / "resumed"
    interrupt_after_first_epoch(go, "starft", out, epochs=3)
    saved = load(out / "resume.pt")
    assert saved["epoch"] == 1 and saved["step"] == 2 and len(saved["log"]) == 2
    capsys.readouterr()

    calls = loss_calls(monkeypatch)
    r = go("starft", out, epochs=3)
    err = capsys.readouterr().err
    assert re.search(r"resuming starft seed 0 from \S*resume\.pt \(epoch 1/3\)", err), err
    assert [c["lam"] for c in calls] == pytest.approx([0.5 / 3, 0.5 / 3, 0.0, 0.0], abs=1e-12)
    assert r["steps"] == 6 and load(out / "checkpoint.pt")["step"] == 6
    log = pd.read_csv(out / "train_log.csv")
    assert log["step"].tolist() == [1, 2, 3, 4, 5, 6] and log["epoch"].tolist() == [0, 0, 1, 1, 2, 2]
    before = pd.DataFrame(saved["log"])
    for col in ("step", "loss", "loss_ft", "regularizer", "lr", "images_per_s"):
        assert log[col].iloc[:2].tolist() == pytest.approx(before[col].tolist(), rel=1e-12), col


# ---------------------------------------------------------------------------------------------
# 4. Checkpoint selection


def test_select_val_worst_group_saves_the_best_epochs_weights(world, go, monkeypatch):
    """With val worst-group accuracies 40, 70, 55 after epochs 1-3, the checkpoint holds the
    weights the student had at the end of epoch 2 (captured here), not those of epoch 3."""
    tmp, cfg, emb = world
    history, seen = [40.0, 70.0, 55.0], []

    def fake_val_metrics(run):
        seen.append({k: v.detach().clone() for k, v in run.student_clip.state_dict().items()})
        wg = history[len(seen) - 1]
        return {"worst_group": wg, "average": wg + 5.0}

    monkeypatch.setattr(selection_mod, "val_metrics", fake_val_metrics)
    out = tmp / "select"
    r = go("flyp", out, epochs=3, select="val_worst_group")
    assert len(seen) == 3
    ckpt = load(out / "checkpoint.pt")
    sel = ckpt["selected"]
    assert sel["epoch"] == 2 and sel["val_worst_group"] == 70.0 and r["selected"] == sel
    assert [h["val_worst_group"] for h in sel["history"]] == history
    second, last = seen[1], seen[2]
    assert any(not torch.equal(second[k], last[k]) for k in second)      # epoch 3 moved the weights
    assert set(ckpt["model"]) == set(second)
    for k, v in second.items():
        assert torch.equal(ckpt["model"][k], v), k
    log = pd.read_csv(out / "train_log.csv")
    assert log["val_worst_group"].dropna().tolist() == history
