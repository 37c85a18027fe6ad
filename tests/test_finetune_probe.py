"""The linear probe of lp and LP-FT, fitted once (issue 18): its chunked objective and fit, the
held-out slice of the training split that chooses its L2 strength (never val), the probe file that
every seed reads, and one `probe` job in the DAG for every seed of lp and lpft."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import dataset_config, interrupt_after_first_epoch, run_cfg, tiny_world
from pipeline import make_workdir, reduced, snakemake

from stages.common.io import sha256_file
from stages.finetune import linear_probe, probe, probe_cli
from stages.finetune.probe_config import probe_id, probe_job_config, probe_path
from stages.finetune.runs import FinetuneConfigError
from stages.finetune.train import train


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def problem(n=203, d=6, c=3, seed=0):
    """Unit features of c classes of unequal sizes, a little separable."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([k % c if k % 5 else 0 for k in range(n)])       # class 0 the largest
    centres = torch.randn(c, d, generator=g, dtype=torch.float64)
    feats = torch.nn.functional.normalize(centres[y] + 1.5 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    return feats, y


# ---------------------------------------------------------------------------------------------
# The fit, chunked


def test_chunked_objective_and_gradient_equal_autograd_on_all_rows():
    feats, y = problem()
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    loss, ce = probe.objective(w, b, feats, y, 0.3)
    gw, gb = torch.autograd.grad(loss, [w, b])
    for chunk in (1, 7, 64, 1000):                # 203 rows: uneven last chunks, and one chunk
        l2, ce2, gw2, gb2 = probe.objective_and_grad(w.detach(), b.detach(), feats, y, 0.3, chunk)
        # float64 sums of 203 terms of size ~1 in another order: ~1e-14 apart
        assert float(l2) == pytest.approx(float(loss.detach()), rel=1e-12, abs=1e-12)
        assert float(ce2) == pytest.approx(float(ce.detach()), rel=1e-12, abs=1e-12)
        assert torch.allclose(gw2, gw, rtol=0, atol=1e-12) and torch.allclose(gb2, gb, rtol=0, atol=1e-12)


def test_chunked_fit_equals_the_unchunked_one():
    feats, y = problem()
    w0, b0 = torch.zeros(3, 6, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    whole = probe.fit_logistic(feats, y, w0, b0, l2=1e-2, chunk=len(y))
    chunked = probe.fit_logistic(feats, y, w0, b0, l2=1e-2, chunk=16)
    for _, _, info in (whole, chunked):
        assert info["grad_max"] <= 10 * probe.TOLERANCE
    # Both stop at a gradient below 1e-5 (10 x TOLERANCE) per entry, ||g|| < 1e-5 sqrt(21) < 5e-5;
    # the objective is l2-strongly convex in W, so ||W - W*|| <= ||g|| / l2 < 5e-3 for each,
    # 1e-2 between them. The biases are compared up to their common shift (softmax ignores it).
    assert torch.allclose(whole[0], chunked[0], rtol=0, atol=1e-2)
    assert torch.allclose(whole[1] - whole[1].mean(), chunked[1] - chunked[1].mean(), rtol=0, atol=1e-2)
    assert whole[2]["objective"] == pytest.approx(chunked[2]["objective"], rel=1e-9)
    # float16 storage is widened chunk by chunk: the fit is the float64 fit of the rounded features
    half = probe.fit_logistic(feats.half(), y, w0, b0, l2=1e-2, chunk=16)
    ref = probe.fit_logistic(feats.half().double(), y, w0, b0, l2=1e-2, chunk=len(y))
    assert torch.allclose(half[0], ref[0], rtol=0, atol=1e-2)


# ---------------------------------------------------------------------------------------------
# The held-out slice


def test_holdout_slice_is_stratified_disjoint_and_reproducible():
    labels = np.repeat([0, 1, 2, 3], [100, 49, 3, 1])[np.random.default_rng(0).permutation(153)]
    fit, held = probe.holdout_split(labels)
    assert len(np.intersect1d(fit, held)) == 0 and np.array_equal(np.union1d(fit, held), np.arange(153))
    # 2% a class: round(2.0) = 2, round(0.98) = 1, at least 1 (class 2), never a class's last image (3)
    assert np.bincount(labels[held], minlength=4).tolist() == [2, 1, 1, 0]
    again_fit, again = probe.holdout_split(labels)
    assert np.array_equal(held, again) and np.array_equal(fit, again_fit)
    assert probe.indices_hash(held) == probe.indices_hash(again)
    other = [probe.holdout_split(labels, seed=s)[1] for s in range(1, 6)]
    assert any(not np.array_equal(held, o) for o in other)        # the seed draws it
    with pytest.raises(ValueError, match="held-out training images"):
        probe.fit_probe(*problem(20), torch.zeros(0, 6), torch.zeros(0, dtype=torch.long),
                        torch.zeros(3, 6), torch.zeros(3), [1e-2])


# ---------------------------------------------------------------------------------------------
# The probe of a run: fitted on the training split only, read from the probe job's file


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("probe")
    cfg, emb = tiny_world(tmp)      # 16 training images, 8 val, 8 test
    return tmp, cfg, emb


GRID = [1e-3, 1e3]    # a probe and a near-zero W whose (unpenalised) biases predict the majority class


def imbalanced(tmp, cfg, name, flip_val=False):
    """A copy of the world's data with 8 landbirds and 3 waterbirds to train on (the held-out
    slice: one of each), and with `flip_val`, every val label flipped and other val pixels."""
    root = tmp / name
    shutil.copytree(cfg["data"]["root"], root)
    meta = pd.read_csv(root / "metadata.csv")
    drop = meta.index[(meta["split"] == 0) & (meta["y"] == 1)][3:]
    meta = meta.drop(drop).reset_index(drop=True)
    if flip_val:
        val = meta["split"] == 1
        meta.loc[val, "y"] = 1 - meta.loc[val, "y"]
        for file in meta.loc[val, "img_filename"]:
            shutil.copy(root / meta.loc[~val, "img_filename"].iloc[0], root / file)
    meta.to_csv(root / "metadata.csv", index=False)
    return dataset_config(root, cfg["model"]["name"], **cfg["finetune"])


def test_l2_is_chosen_on_training_images_never_on_val(world):
    tmp, cfg, emb = world
    plain, flipped = imbalanced(tmp, cfg, "plain"), imbalanced(tmp, cfg, "flipped", flip_val=True)
    rc = run_cfg(cfg["finetune"], "lp", lp_l2_grid=GRID)
    a = load(train(plain, rc, 0, emb, tmp / "lp_a", progress=False)["checkpoint"])
    b = load(train(flipped, rc, 0, emb, tmp / "lp_b", progress=False)["checkpoint"])
    fits = {f["l2"]: f["holdout_accuracy"] for f in a["probe"]["fits"]}
    assert fits == {1e-3: 100.0, 1e3: 50.0}     # not a tie: the slice decides (W ~ 0 says "landbird")
    assert a["probe"]["holdout"]["size"] == 2 and a["probe"]["holdout"]["fit_size"] == 9
    # val's images and labels changed, the choice and the head did not: val played no part (chosen
    # on val, the flipped labels would pick 1e3 there)
    assert a["probe"]["l2"] == b["probe"]["l2"] == 1e-3
    assert a["probe"]["fits"] == b["probe"]["fits"]
    assert all(torch.equal(a["head"][k], b["head"][k]) for k in a["head"])


def test_runs_read_the_probe_jobs_file_and_record_it(world, monkeypatch):
    tmp, cfg, emb = world
    job = {k: cfg[k] for k in ("classnames", "data", "model", "evaluate")}
    rc = run_cfg(cfg["finetune"], "lpft", lp_l2_grid=GRID, epochs=1)
    path = tmp / probe_path("tiny", rc.as_dict())
    probe_cli.main(["--dataset-config", json.dumps(job),
                    "--run-config", json.dumps(probe_job_config(cfg["finetune"], rc.as_dict())), "--out", str(path)])
    record = load(path)
    assert record["id"] == probe_id(rc.as_dict()) == path.parent.name
    assert record["l2"] == max(record["fits"], key=lambda f: (f["holdout_accuracy"], f["l2"]))["l2"]
    labels = np.arange(16) % 2
    assert record["holdout"]["indices_sha256"] == probe.indices_hash(probe.holdout_split(labels)[1])
    assert record["features"] == {"n": 16, "dim": 32, "dtype": "float16", "bytes": 16 * 32 * 2}

    # the runs read it (no fit of their own) and record which probe they read
    def no_fit(*a, **k):
        raise AssertionError("a run with a probe file fitted its own probe")
    monkeypatch.setattr(linear_probe, "build_probe", no_fit)
    lp_rc = run_cfg(cfg["finetune"], "lp", lp_l2_grid=GRID)
    for method, seed, run in (("lp", 0, lp_rc), ("lpft", 1, rc), ("lpft", 2, rc)):
        out = train(cfg, run, seed, emb, tmp / f"{method}{seed}", progress=False, probe=path)
        ckpt = load(out["checkpoint"])
        assert ckpt["probe"]["file"] == str(path) and ckpt["probe"]["file_sha256"] == sha256_file(path)
        assert ckpt["probe"]["id"] == record["id"] and ckpt["probe"]["holdout"] == record["holdout"]
    head = load(tmp / "lp0" / "checkpoint.pt")["head"]
    assert torch.equal(head["linear.weight"], record["weight"]) and torch.equal(head["linear.bias"], record["bias"])
    # a probe of another configuration is refused, naming what differs
    with pytest.raises(FinetuneConfigError, match="fitted for another config"):
        train(cfg, run_cfg(cfg["finetune"], "lp", lp_l2_grid=[1e-2]), 0, emb, tmp / "lp_other", progress=False,
              probe=path)


# ---------------------------------------------------------------------------------------------
# The workflow: one probe job for every seed


def test_one_probe_job_serves_every_seed_of_lp_and_lpft(tmp_path):
    finetune = {"methods": ["zeroshot", "lp", "lpft", "lpft_strong", "lp_wide"], "seeds": [0, 1, 2], "epochs": 1,
                "batch_size": 32, "warmup_steps": 1,
                "variants": {"lpft_strong": {"method": "lpft", "lr": 1e-3},          # the same probe
                             "lp_wide": {"method": "lp", "lp_l2_grid": [1e-2]}}}     # a probe of its own
    work = make_workdir(tmp_path, reduced(finetune=finetune))
    dry = snakemake(work, "-n", "-p", "results/synthbirds_intask").stdout
    probes = re.findall(r"^\s*(?:local)?rule probe:\s*\n(?:.*\n)*?\s*output: (\S+)", dry, flags=re.MULTILINE)
    assert len(probes) == 2, dry[-3000:]
    assert all(re.fullmatch(r"data/synthbirds_intask/probe/[0-9a-f]{10}/probe.pt", p) for p in probes)
    runs = [line for line in dry.splitlines() if "-m stages.finetune --dataset-config" in line]
    readers = {p: sorted(re.search(r"--method (\w+) --seed (\d)", line).groups() for line in runs if f"--probe {p}" in line)
               for p in probes}
    seeds = ["0", "1", "2"]
    assert sorted(readers.values()) == [[("lp", s) for s in seeds] + [("lpft", s) for s in seeds]
                                        + [("lpft_strong", s) for s in seeds], [("lp_wide", s) for s in seeds]]
    assert sum("--probe" in line for line in runs) == 12      # zeroshot reads none


def test_a_resume_made_with_another_probe_starts_afresh(world, capsys):
    tmp, cfg, emb = world
    rc = run_cfg(cfg["finetune"], "lpft", lp_l2_grid=GRID, epochs=2)
    job = {k: cfg[k] for k in ("classnames", "data", "model", "evaluate")}
    first = tmp / "resume_probe" / "a" / "probe.pt"
    probe_cli.main(["--dataset-config", json.dumps(job),
                    "--run-config", json.dumps(probe_job_config(cfg["finetune"], rc.as_dict())), "--out", str(first)])
    second = first.parent.parent / "b" / "probe.pt"
    record = load(first)
    linear_probe.save_probe(second, {**record, "bias": record["bias"] + 1.0})     # another file, same config

    def go(method, out, on_epoch=None):
        return train(cfg, rc, 0, emb, out, progress=False, probe=first, on_epoch=on_epoch)
    out = tmp / "resume_probe" / "run"
    interrupt_after_first_epoch(go, "lpft", out)
    capsys.readouterr()
    result = train(cfg, rc, 0, emb, out, progress=False, probe=second)
    err = capsys.readouterr().err
    assert "from another linear probe" in err and "resuming" not in err
    ckpt = load(result["checkpoint"])
    assert ckpt["probe"]["file"] == str(second) and ckpt["probe"]["file_sha256"] == sha256_file(second)
