"""The evaluate stage: its CLI (one run, every target of its experiment, one record file per target)
and how it scores a run, against values computed in the test (group metrics, zero-shot head,
linear head, WiSE-FT)."""

from __future__ import annotations

import collections
import json
import types
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import TEMPLATES, dataset_config, make_dataset, make_tiny_clip
from PIL import Image

from stages import datasets
from stages.datasets import ImageList
from stages.datasets.waterbirds import read_metadata
from stages.evaluate import run as evaluate
from stages.evaluate.__main__ import main as evaluate_main
from stages.method.models import load_clip
from stages.method.scoring import split_metrics
from stages.method.teacher_text import read_embeddings
from stages.method.zeroshot import ensemble_prompts, zeroshot_weights


def test_one_job_writes_one_record_per_target(tmp_path, capsys):
    model = make_tiny_clip(tmp_path / "clip")
    roots = {"own": make_dataset(tmp_path / "own"), "other": make_dataset(tmp_path / "other", seed=1)}
    job = dataset_config(roots["own"], model)
    checks = {}
    for name, root in roots.items():
        checks[name] = tmp_path / f"{name}_check.json"
        checks[name].write_text(json.dumps(datasets.check(name, "waterbirds", str(root), templates=TEMPLATES)))
    targets = [{"target": "own", "role": "id", "reader": "waterbirds", "root": str(roots["own"]), "splits": ["val"],
                "data_check": str(checks["own"])},
               {"target": "other", "role": "group", "reader": "waterbirds", "root": str(roots["other"]),
                "splits": ["val", "test"], "data_check": str(checks["other"])}]
    cfg = {"experiment": "tiny", "targets": targets, "model": job["model"], "evaluate": job["evaluate"],
           "finetune": {"precision": "auto"}}
    evaluate_main(["--config", json.dumps(cfg), "--method", "zeroshot", "--seed", "3", "--out-dir", str(tmp_path / "eval")])

    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "eval").glob("*.json")}
    assert set(records) == {"own", "other"}
    assert records["own"]["role"] == "id" and records["other"]["role"] == "group"
    assert set(records["own"]["splits"]) == {"val"} and set(records["other"]["splits"]) == {"val", "test"}
    # the same model on the same images scores the same, whichever target file it is written to
    assert records["own"]["splits"]["val"]["accuracy"] == pytest.approx(
        evaluate.run({**cfg, "targets": targets[:1]}, {"own": json.loads(checks["own"].read_text())},
                     "zeroshot", 3)["own"]["splits"]["val"]["accuracy"])
    for r in records.values():
        assert r["seed"] == 3 and r["method"] == "zeroshot" and r["head"] == "zeroshot" and r["checkpoint"] is None
        assert r["splits"]["val"]["n"] == 8
    printed = capsys.readouterr().out
    assert "zeroshot seed 3 own val: accuracy" in printed and "zeroshot seed 3 other test: accuracy" in printed


# ---------------------------------------------------------------------------------------------
# Scoring with expected values computed in the test (issue 22): group metrics of a split with
# unequal groups, CLIP's prompt ensemble, a run's own linear head and WiSE-FT between 0 and 1.
#
# The fixture is a Waterbirds-layout folder whose groups have unequal sizes, with training
# proportions unlike the test split's, and a checkpoint whose linear head is built (least squares
# on the image features) to make chosen predictions on the test split, so that its group metrics
# are hand-computed numbers:
#
#   group (y, place)          train   test   test correct   test accuracy
#   0 landbird on land   (0,0)   8      4        3              75 %
#   1 landbird on water  (0,1)   2      2        1              50 %
#   2 waterbird on land  (1,0)   1      4        1              25 %   <- worst group
#   3 waterbird on water (1,1)   5      2        2             100 %
#
#   average  = 7/12                                   = 58.333 %
#   adjusted = (8*.75 + 2*.5 + 1*.25 + 5*1) / 16 = 12.25/16  = 76.5625 % (TRAINING proportions)
# The mix-ups give other numbers: weighting by the test split's own counts (4, 2, 4, 2) gives
# 7/12 = 58.333 %; groups numbered 2*place + y swap groups 1 and 2 (per-group [75, 25, 50, 100],
# sizes [4, 4, 2, 2], and with the true training counts an adjusted average of 12/16 = 75 %).

WB_CLASSES = ["landbird", "waterbird"]
GROUP_NAMES = ["landbird on land", "landbird on water", "waterbird on land", "waterbird on water"]
GROUP_YP = [(0, 0), (0, 1), (1, 0), (1, 1)]   # (y, place) of each named group, in that order
TRAIN_YP = [(0, 0)] * 5 + [(1, 1)] * 3 + [(0, 1), (1, 0), (0, 0), (1, 1), (0, 0), (0, 1), (1, 1), (0, 0)]
TRAIN_COUNTS = [8, 2, 1, 5]                   # of TRAIN_YP, counted by hand
VAL_YP = [(0, 0), (0, 1), (1, 0), (1, 1)]
# test rows: (y, place, whether the designed head predicts y), groups deliberately interleaved
TEST_ROWS = [(1, 0, False), (0, 0, True), (0, 1, True), (1, 1, True), (1, 0, True), (0, 0, True),
             (0, 1, False), (1, 0, False), (0, 0, False), (1, 1, True), (1, 0, False), (0, 0, True)]
HAND = {"accuracy": 100 * 7 / 12, "average": 100 * 7 / 12, "worst_group": 25.0, "adjusted_average": 76.5625,
        "group_accuracy": [75.0, 50.0, 25.0, 100.0], "group_size": [4, 2, 4, 2], "n": 12}
TEMPLATES_2 = ["a photo of a {}.", "This is a picture of a {}."]
OTHER_CLASSES = ["duck", "sparrow"]
TEMPLATES_3 = ["a photo of a {}.", "a blurry photo of a {}.", "a drawing of a {}."]
# How far two float32 evaluations of the same network on the same image may put its normalised
# feature: float32 rounding (2^-24 relative) accumulated through the tiny towers (2 vision, 1 text
# layers of width 64) when the batch, and so the kernels' summation order, changes; measured
# 2.6e-7 (batch 1 against 12) on the fixture, so 1e-4 bounds it with a wide margin, on any CPU.
# A logit <w, f> + b then moves by at most |w| * FEATURE_SLACK, and a prediction is compared
# exactly only where its top-2 logits are further apart than twice that.
FEATURE_SLACK = 1e-4


def write_waterbirds(root: Path) -> Path:
    """A Waterbirds-layout folder of noise images (what the head predicts is designed, not learnt)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    splits = [(0, TRAIN_YP), (1, VAL_YP), (2, [(y, p) for y, p, _ in TEST_ROWS])]
    for split, yps in splits:
        for k, (y, place) in enumerate(yps):
            name = f"images/{split}_{k:03d}.png"
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / name)
            rows.append({"img_id": len(rows), "img_filename": name, "y": y, "split": split, "place": place,
                         "place_filename": f"/{['land', 'water'][place]}/x.jpg"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


@torch.no_grad()
def image_features(model, preprocess, root: Path, split: int) -> torch.Tensor:
    """Normalised image features [N, D] of one split, in metadata order, computed here (not by
    stages.method.zeroshot.encode_images): one batch of the whole split."""
    meta = pd.read_csv(root / "metadata.csv")
    names = meta.loc[meta["split"] == split, "img_filename"]
    x = torch.stack([preprocess(Image.open(root / n).convert("RGB")) for n in names])
    return F.normalize(model.eval().encode_image(x).float(), dim=-1)


@torch.no_grad()
def ensemble_by_loop(model, tokenizer, classnames, templates) -> torch.Tensor:
    """CLIP's prompt ensemble, written out: for each class, every template's prompt encoded on
    its own by the model's encode_text and L2-normalised, averaged over the class's templates,
    and the mean L2-normalised again. [C, D]."""
    rows = []
    for c in classnames:
        per_template = [F.normalize(model.eval().encode_text(tokenizer([t.format(c)])).float()[0], dim=0)
                        for t in templates]
        rows.append(F.normalize(sum(per_template) / len(per_template), dim=0))
    return torch.stack(rows)


def predictions(logits: torch.Tensor, weight_norm: float) -> list[int]:
    """argmax per row, after checking that no feature error within FEATURE_SLACK could flip it."""
    top2 = logits.double().topk(2, dim=1).values
    gap = float((top2[:, 0] - top2[:, 1]).min())
    assert gap > 2 * weight_norm * FEATURE_SLACK, f"a near tie ({gap:.2e}): the fixture cannot be compared exactly"
    return logits.argmax(dim=1).tolist()


def metrics_by_loop(pred, rows, train_counts) -> dict:
    """Accuracy and group metrics of predictions on TEST_ROWS, by explicit loops over the groups."""
    correct = [int(p == y) for p, (y, _, _) in zip(pred, rows)]
    accs, sizes = [], []
    for gy, gp in GROUP_YP:
        hits = [c for c, (y, place, _) in zip(correct, rows) if (y, place) == (gy, gp)]
        sizes.append(len(hits))
        accs.append(sum(hits) / len(hits))
    adjusted = sum(a * w for a, w in zip(accs, train_counts)) / sum(train_counts)
    return {"accuracy": 100 * sum(correct) / len(correct), "average": 100 * sum(correct) / len(correct),
            "worst_group": 100 * min(accs), "adjusted_average": 100 * adjusted,
            "group_accuracy": [100 * a for a in accs], "group_size": sizes, "n": len(correct)}


def assert_metrics(got: dict, expected: dict) -> None:
    # ratios of small integers: the group metrics are float64 on both sides (equal up to a few
    # ulps, rel 1e-9); `accuracy` is a float32 mean in the stage (relative rounding 2^-24 ~ 6e-8
    # per operation, so rel 1e-6), while one sample of 12 more or less moves it by 8 %
    wrong = {key: (got[key], value) for key, value in expected.items()
             if got[key] != pytest.approx(value, rel=1e-6 if key == "accuracy" else 1e-9, abs=1e-9)}
    assert not wrong, f"(got, expected): {wrong}"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scoring")
    root = write_waterbirds(tmp / "data")
    model_name = make_tiny_clip(tmp / "clip")
    check = datasets.check("tiny", "waterbirds", str(root), templates=TEMPLATES_2)
    other_check = datasets.check("other", "waterbirds", str(root), classnames=OTHER_CLASSES, templates=TEMPLATES_3)
    clip = load_clip(model_name)
    theta0 = {k: v.clone() for k, v in clip.model.state_dict().items()}
    gen = torch.Generator().manual_seed(1)   # the "fine-tuned" weights: every float tensor moved
    theta1 = {k: v + 0.02 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
              for k, v in theta0.items()}
    clip.model.load_state_dict(theta1)
    feats1 = image_features(clip.model, clip.preprocess_val, root, 2).double()
    # the head: logits (+1 for the designed prediction, -1 for the other class) = W f + b, W solved
    # by least squares (12 features in 32 dimensions: exact); b = (1.5, -1.5) so that without it
    # every designed class-0 prediction, W f = (-0.5, 0.5), would turn into class 1
    designed = [y if ok else 1 - y for y, _, ok in TEST_ROWS]
    target = torch.tensor([[1.0, -1.0] if p == 0 else [-1.0, 1.0] for p in designed], dtype=torch.float64)
    bias = torch.tensor([1.5, -1.5], dtype=torch.float64)
    weight = torch.linalg.lstsq(feats1, target - bias).solution.T
    assert torch.allclose(feats1 @ weight.T + bias, target, atol=1e-6)
    head = {"linear.weight": weight.float(), "linear.bias": bias.float()}
    ckpts = {}
    for name, h in (("ft", head), ("flyp", None)):
        ckpts[name] = tmp / f"{name}.pt"
        torch.save({"model": theta1, "head": h, "classnames": WB_CLASSES, "method": name, "name": name,
                    "epoch": 2, "config": {"method": name, "name": name, "precision": "auto"}}, ckpts[name])
    return types.SimpleNamespace(root=root, model_name=model_name, check=check, other_check=other_check,
                                 theta0=theta0, theta1=theta1, head=head, designed=designed, ckpts=ckpts,
                                 clip=clip)


def target_cfg(s, name="tiny") -> dict:
    return {"target": name, "role": "id" if name == "tiny" else "group", "reader": "waterbirds",
            "root": str(s.root), "splits": ["test"]}


def eval_cfg(s, targets, **finetune) -> dict:
    # batch 5: the stage encodes the 12 test images in other batches than image_features does
    return {"experiment": "tiny", "model": {"name": s.model_name, "pretrained": None},
            "evaluate": {"device": "cpu", "batch_size": 5, "num_workers": 0},
            "finetune": {"precision": "auto", **finetune}, "targets": targets}


def test_split_metrics_of_a_real_split_weight_groups_by_training_counts(scored):
    """split_metrics on the reader's own ClassificationSet (its `group`), with the training counts
    of the data check record, against the hand-computed table above."""
    assert scored.check["group_names"] == GROUP_NAMES
    # the reader's group column numbers the groups as the names do: g = 2 * y + place
    meta = read_metadata(scored.root)
    assert [GROUP_YP[g] for g in meta["group"]] == list(zip(meta["y"], meta["place"]))
    assert scored.check["splits"]["train"]["group_counts"] == TRAIN_COUNTS
    assert scored.check["splits"]["test"]["group_counts"] == HAND["group_size"]
    test = datasets.open("waterbirds", scored.root, "test")
    y = torch.tensor([r[0] for r in TEST_ROWS])
    place = torch.tensor([r[1] for r in TEST_ROWS])
    pred = torch.tensor(scored.designed)
    m = split_metrics(test, pred, y, place, scored.check["splits"]["train"]["group_counts"])
    assert_metrics(m, HAND)
    # a set without a train split weights by its own groups: the average, 7/12
    own = split_metrics(test, pred, y, place, None)
    assert own["adjusted_average"] == pytest.approx(100 * 7 / 12, rel=1e-9)


def test_ensemble_prompts_averages_each_class_over_its_templates():
    # [C=3, T=2, D=2], unit vectors, hand-computed: class 0 -> (1,1)/sqrt2; class 1 -> (1,0);
    # class 2 -> mean (0.3, 0.9), norm sqrt(0.9)
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.6, 0.8]]])
    expected = torch.tensor([[0.5 ** 0.5, 0.5 ** 0.5], [1.0, 0.0], [0.3 / 0.9 ** 0.5, 0.9 / 0.9 ** 0.5]])
    torch.testing.assert_close(ensemble_prompts(feats), expected, atol=1e-6, rtol=0)  # float32 rounding


@pytest.mark.parametrize("classnames,templates", [(["landbird", "waterbird", "duck"], TEMPLATES_2),
                                                  (OTHER_CLASSES, TEMPLATES_3)])
def test_zeroshot_head_is_clips_prompt_ensemble(scored, classnames, templates):
    """zeroshot_weights against CLIP's prompt ensemble written as a loop (C != T, so an average over
    the wrong axis has the wrong shape, and a wrong grouping of the prompts other rows)."""
    clip = load_clip(scored.model_name)
    got = zeroshot_weights(clip.model, clip.tokenizer, classnames, templates, torch.device("cpu"))
    expected = ensemble_by_loop(clip.model, clip.tokenizer, classnames, templates)
    assert got.shape == (len(classnames), expected.shape[1])
    # unit vectors from two float32 passes of the text tower (one prompt at a time vs a batch):
    # entries agree to ~1e-6; 1e-5 keeps a margin, while a wrong axis or order changes them by >1e-2
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert float((expected[0] - expected[1]).abs().max()) > 1e-2   # the classes' rows do differ


def test_linear_head_run_is_scored_with_its_head_and_training_group_weights(scored):
    """A checkpoint with a linear head on its own label space: record head "linear", predictions
    from the head's weights and the fine-tuned image features (computed here), and the
    hand-computed group metrics, the adjusted average weighted by the data check's TRAINING counts."""
    out = evaluate.run(eval_cfg(scored, [target_cfg(scored)]), {"tiny": scored.check}, "ft", 0,
                       str(scored.ckpts["ft"]))["tiny"]
    assert out["head"] == "linear" and out["group_names"] == GROUP_NAMES
    # the hand computation from the head: logits_c = <W_c, f> + b_c, one image at a time
    w, b = scored.head["linear.weight"].double(), scored.head["linear.bias"].double()
    model = load_clip(scored.model_name).model
    model.load_state_dict(scored.theta1)
    feats = image_features(model, scored.clip.preprocess_val, scored.root, 2).double()
    logits = torch.stack([torch.stack([w[c] @ f + b[c] for c in range(2)]) for f in feats])
    pred = predictions(logits, float(w.norm(dim=1).max()))
    assert pred == scored.designed
    assert_metrics(out["splits"]["test"], metrics_by_loop(pred, TEST_ROWS, TRAIN_COUNTS))
    assert_metrics(out["splits"]["test"], HAND)


def test_linear_head_run_on_other_classnames_is_scored_zeroshot(scored):
    """On a target whose class names are not the head's, the run falls back to the zero-shot head
    of its fine-tuned text encoder (2 classes x 3 templates, computed here by the loop)."""
    out = evaluate.run(eval_cfg(scored, [target_cfg(scored, "other")]), {"other": scored.other_check}, "ft", 0,
                       str(scored.ckpts["ft"]))["other"]
    assert out["head"] == "zeroshot" and out["classnames"] == OTHER_CLASSES
    model = load_clip(scored.model_name).model
    model.load_state_dict(scored.theta1)
    heads = ensemble_by_loop(model, scored.clip.tokenizer, OTHER_CLASSES, TEMPLATES_3).double()
    feats = image_features(model, scored.clip.preprocess_val, scored.root, 2).double()
    pred = predictions(feats @ heads.T, 1.0)
    assert_metrics(out["splits"]["test"], metrics_by_loop(pred, TEST_ROWS, TRAIN_COUNTS))


@pytest.mark.parametrize("method", ["ft", "flyp"])
def test_wiseft_at_an_interior_alpha_is_the_interpolated_model(scored, method, monkeypatch):
    """WiSE-FT at alpha 0.3 against a model whose weights the test interpolates itself,
    (1-a)*theta0 + a*theta1 per tensor, with (ft) the linear head interpolated between the zero-shot
    head of theta0 (CLIP's ensemble times theta0's logit scale, bias 0: the head fine-tuning starts
    from) and the run's head, or (flyp) the zero-shot head of the interpolated text encoder."""
    a = 0.3
    seen = []
    real_make_head = evaluate.make_head

    def spy(model, tokenizer, classnames, templates, device, head_state):
        seen.append(({k: v.clone() for k, v in model.state_dict().items()},
                     None if head_state is None else {k: v.clone() for k, v in head_state.items()}))
        return real_make_head(model, tokenizer, classnames, templates, device, head_state)

    monkeypatch.setattr(evaluate, "make_head", spy)
    cfg = eval_cfg(scored, [target_cfg(scored)], wiseft_alphas=[1.0, a, 0.0], wiseft_alpha=a)
    out = evaluate.run(cfg, {"tiny": scored.check}, method, 0, str(scored.ckpts[method]), wiseft=True)["tiny"]
    assert [p["alpha"] for p in out["wiseft"]] == [0.0, a, 1.0] and out["splits"] == out["wiseft"][1]["splits"]
    assert len(seen) == 3, "evaluate_target no longer builds each alpha's head with make_head: update the spy"

    theta = {k: (1 - a) * v0 + a * scored.theta1[k] if v0.is_floating_point() else scored.theta1[k]
             for k, v0 in scored.theta0.items()}
    model, tokenizer = load_clip(scored.model_name).model, scored.clip.tokenizer
    if method == "ft":
        model.load_state_dict(scored.theta0)
        zs = float(scored.theta0["logit_scale"].exp()) * ensemble_by_loop(model, tokenizer, WB_CLASSES, TEMPLATES_2)
        head = {"linear.weight": (1 - a) * zs + a * scored.head["linear.weight"],
                "linear.bias": a * scored.head["linear.bias"]}
    # the stage's model at alpha: the same float32 formula, so equal up to a few ulps of the weights
    state, head_state = seen[1]
    assert state.keys() == theta.keys()
    for k, v in theta.items():
        torch.testing.assert_close(state[k], v, rtol=1e-6, atol=1e-6, msg=k)
    model.load_state_dict(theta)
    if method == "ft":
        # logit scale (14.3) x unit vectors from two float32 passes of the text tower (~1e-6 apart)
        torch.testing.assert_close(head_state, head, rtol=0, atol=1e-4)
        w, b = head["linear.weight"].double(), head["linear.bias"].double()
    else:
        assert head_state is None
        w = ensemble_by_loop(model, tokenizer, WB_CLASSES, TEMPLATES_2).double()
        b = torch.zeros(2, dtype=torch.float64)
    feats = image_features(model, scored.clip.preprocess_val, scored.root, 2).double()
    pred = predictions(feats @ w.T + b, float(w.norm(dim=1).max()))
    expected = metrics_by_loop(pred, TEST_ROWS, TRAIN_COUNTS)
    assert_metrics(out["wiseft"][1]["splits"]["test"], expected)
    if method == "ft":   # at alpha 1 the run's own head and weights: the hand-computed table
        assert_metrics(out["wiseft"][2]["splits"]["test"], HAND)


# ---------------------------------------------------------------------------------------------
# Evaluation without repeats (issue 18): in one job each target's images are decoded once, however
# many WiSE-FT alphas are scored, and each zero-shot head is built once per (weights, class names,
# templates), however many targets share it.

def count_decodes(monkeypatch) -> collections.Counter:
    """Counts every image the readers decode, by path."""
    decoded = collections.Counter()
    real = ImageList.__getitem__

    def getitem(self, i):
        decoded[self.path(i)] += 1
        return real(self, i)

    monkeypatch.setattr(ImageList, "__getitem__", getitem)
    return decoded


def count_prompts(monkeypatch) -> collections.Counter:
    """Counts every prompt the text encoder encodes, by (the text tower's weights, the prompt's tokens)."""
    encoded = collections.Counter()
    real = open_clip.CLIP.encode_text

    def encode_text(self, tokens, *args, **kwargs):
        weights = (float(self.token_embedding.weight.double().sum()), float(self.ln_final.weight.double().sum()))
        encoded.update((weights, tuple(row.tolist())) for row in tokens)
        return real(self, tokens, *args, **kwargs)

    monkeypatch.setattr(open_clip.CLIP, "encode_text", encode_text)
    return encoded


def test_wiseft_decodes_each_targets_images_once_and_scores_every_alpha(scored, monkeypatch):
    """Three alphas on two targets of the same folder ('tiny': val and test; 'other': test, other class
    names): every image is decoded once per target that shows it (not once per alpha), and each
    alpha's metrics are those of WiSE-FT evaluated one alpha at a time."""
    alphas = [0.0, 0.5, 1.0]
    targets = [{**target_cfg(scored), "splits": ["val", "test"]}, target_cfg(scored, "other")]
    checks = {"tiny": scored.check, "other": scored.other_check}
    cfg = eval_cfg(scored, targets, wiseft_alphas=alphas, wiseft_alpha=0.5)
    decoded = count_decodes(monkeypatch)
    out = evaluate.run(cfg, checks, "wiseft", 0, str(scored.ckpts["ft"]), wiseft=True)
    meta = read_metadata(scored.root)
    paths = {split: [str(scored.root / n) for n in meta.loc[meta["split"] == code, "img_filename"]]
             for split, code in (("val", 1), ("test", 2))}
    assert decoded == collections.Counter(paths["val"] + 2 * paths["test"])
    # the same numbers as each alpha evaluated on its own (one alpha per job: its images decoded once)
    for alpha in alphas:
        one = evaluate.run(eval_cfg(scored, targets, wiseft_alphas=[alpha], wiseft_alpha=alpha), checks, "wiseft", 0,
                           str(scored.ckpts["ft"]), wiseft=True)
        for target in checks:
            got = next(p["splits"] for p in out[target]["wiseft"] if p["alpha"] == alpha)
            for split, m in one[target]["splits"].items():
                assert_metrics(got[split], m)
    assert out["tiny"]["splits"] == out["tiny"]["wiseft"][1]["splits"] and out["tiny"]["head"] == "linear"


@pytest.mark.parametrize("wiseft", [False, True])
def test_each_zeroshot_head_is_built_once_per_weights_class_names_and_templates(scored, monkeypatch, wiseft):
    """Targets 'other' and 'again' share class names and templates; 'tiny' has the run's linear head.
    A run builds the shared zero-shot head once (2 classes x 3 templates) and the zero-shot model's
    head that WiSE-FT mixes with the linear head once (2 x 2); WiSE-FT builds the shared head once per
    alpha, whose text encoder differs."""
    alphas = [0.0, 0.5, 1.0]
    targets = [target_cfg(scored), target_cfg(scored, "other"), target_cfg(scored, "again")]
    checks = {"tiny": scored.check, "other": scored.other_check, "again": scored.other_check}
    cfg = eval_cfg(scored, targets, wiseft_alphas=alphas, wiseft_alpha=0.5)
    encoded = count_prompts(monkeypatch)
    out = evaluate.run(cfg, checks, "wiseft" if wiseft else "ft", 0, str(scored.ckpts["ft"]), wiseft=wiseft)
    assert out["other"]["splits"] == out["again"]["splits"]
    assert set(encoded.values()) == {1}, "a prompt encoded twice with the same weights"
    shared = len(OTHER_CLASSES) * len(TEMPLATES_3)
    if wiseft:
        assert len({weights for weights, _ in encoded}) == len(alphas)   # theta0: alpha 0
        assert sum(encoded.values()) == len(WB_CLASSES) * len(TEMPLATES_2) + len(alphas) * shared
    else:
        assert sum(encoded.values()) == shared   # the linear head's target encodes nothing


# ---------------------------------------------------------------------------------------------
# Spuriosity drift (issue 20, item 3): on each split's images, KL(p_teacher || p_run) over the
# experiment's spurious captions at the teacher's logit scale, with StarFT's label mask (the
# image's own class's captions removed) and without. Checked against a float64 loop over images
# and captions, on the TRAIN split (10 landbirds, 6 waterbirds: unequal classes; batches 5,5,5,1).

POOLS_DRIFT = {"background": ["a {} on the water.", "a {} in a forest.", "a {} over the sea."],
               "color": ["a bright {}.", "a {} in a forest."]}   # one template in both pools: one caption


@pytest.fixture(scope="module")
def drift(scored, tmp_path_factory):
    from stages.embed import run as embed

    tmp = tmp_path_factory.mktemp("drift")
    pools = []
    for kind, templates in POOLS_DRIFT.items():
        pools.append(str(tmp / f"{kind}.descriptions.parquet"))
        pd.DataFrame({"template": templates}).to_parquet(pools[-1])
    table = tmp / "teacher_text.parquet"
    embed.run({"classnames": WB_CLASSES, "model": {"name": scored.model_name, "pretrained": None},
               "evaluate": {"templates": TEMPLATES_2}, "finetune": {}}, pools, table, device="cpu")
    # a student far enough from the teacher that the KL's direction shows (0.02 moves it little)
    gen = torch.Generator().manual_seed(2)
    theta1 = {k: v + 0.15 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
              for k, v in scored.theta0.items()}
    ckpt = tmp / "flyp.pt"
    torch.save({"model": theta1, "head": None, "classnames": WB_CLASSES, "method": "flyp", "name": "flyp",
                "epoch": 2, "config": {"method": "flyp", "name": "flyp", "precision": "auto"}}, ckpt)
    return types.SimpleNamespace(table=table, theta1=theta1, ckpt=ckpt)


def drift_cfg(scored, drift, targets, **finetune) -> dict:
    return {**eval_cfg(scored, targets, **finetune), "embeddings": str(drift.table)}


def train_target(scored, name="tiny") -> dict:
    return {**target_cfg(scored, name), "splits": ["train"]}


@torch.no_grad()
def drift_by_loop(scored, drift, theta) -> tuple[float, float]:
    """(masked, unmasked) mean KL(p_teacher || p_run) on the train split in float64, one image and
    one caption at a time: g0 read from the table by text, g the run's text tower per caption."""
    tokenizer = scored.clip.tokenizer
    templates = list(dict.fromkeys(t for ts in POOLS_DRIFT.values() for t in ts))
    captions = [(t.replace("{}", c), k) for t in templates for k, c in enumerate(WB_CLASSES)]
    emb = read_embeddings(drift.table)
    by_text = {text: i for i, text in zip(emb.table.index, emb.table["text"]) if emb.table["kind"][i] == "spurious"}
    g0 = torch.stack([emb.embeddings[by_text[text]] for text, _ in captions]).double()
    teacher, run = load_clip(scored.model_name).model, load_clip(scored.model_name).model
    teacher.load_state_dict(scored.theta0)
    run.load_state_dict(theta)
    g = torch.stack([F.normalize(run.eval().encode_text(tokenizer([text])).double()[0], dim=0)
                     for text, _ in captions])
    f0 = image_features(teacher, scored.clip.preprocess_val, scored.root, 0).double()
    f = image_features(run, scored.clip.preprocess_val, scored.root, 0).double()
    tau0 = float(scored.theta0["logit_scale"].double().exp())
    ys = [y for y, _ in TRAIN_YP]
    masked, unmasked = [], []
    for i, y in enumerate(ys):
        for out, keep in ((unmasked, range(len(captions))), (masked, [j for j, (_, c) in enumerate(captions) if c != y])):
            t = torch.stack([tau0 * f0[i] @ g0[j] for j in keep])
            s = torch.stack([tau0 * f[i] @ g[j] for j in keep])
            p, log_p, log_q = t.softmax(0), t.log_softmax(0), s.log_softmax(0)
            out.append(float((p * (log_p - log_q)).sum()))
    return sum(masked) / len(ys), sum(unmasked) / len(ys)


def test_spuriosity_drift_is_the_label_masked_kl_of_teacher_and_run(scored, drift):
    """A fine-tuned run (its own text encoder): drift on the train split equals the float64 loop, on
    the target with the training classes (masked and unmasked) and on one with other class names
    (same images: unmasked only); both clearly above 0 and unequal."""
    targets = [train_target(scored), train_target(scored, "other")]
    out = evaluate.run(drift_cfg(scored, drift, targets), {"tiny": scored.check, "other": scored.other_check},
                       "flyp", 0, str(drift.ckpt))
    masked, unmasked = drift_by_loop(scored, drift, drift.theta1)
    got = out["tiny"]["splits"]["train"]["spuriosity_drift"]
    assert got == {"masked_kl": pytest.approx(masked, rel=1e-4), "kl": pytest.approx(unmasked, rel=1e-4),
                   "n_images": len(TRAIN_YP), "n_captions": 4 * len(WB_CLASSES), "pools": ["background", "color"],
                   "scale": "teacher"}
    # float32 stage against float64 loop: features agree to ~1e-6, logits (x tau0 ~ 14) to ~1e-5,
    # so the KLs to ~1e-5 absolute; the values and their gap are far larger, so rel 1e-4 tells
    # the mask, the KL's direction and the scale apart
    assert masked > 1e-2 and unmasked > 1e-2 and abs(masked - unmasked) > 1e-3 * unmasked
    other = out["other"]["splits"]["train"]["spuriosity_drift"]
    assert other["masked_kl"] is None and other["kl"] == pytest.approx(unmasked, rel=1e-4)


def test_spuriosity_drift_of_the_zeroshot_run_is_zero(scored, drift, tmp_path):
    """The teacher against itself, through the CLI: 0 up to float32 rounding (its text features
    computed in the job vs the table's, in other batches: ~1e-7 apart)."""
    (tmp_path / "check.json").write_text(json.dumps(scored.check))
    cfg = drift_cfg(scored, drift, [{**train_target(scored), "data_check": str(tmp_path / "check.json")}])
    evaluate_main(["--config", json.dumps(cfg), "--method", "zeroshot", "--out-dir", str(tmp_path / "eval")])
    got = json.loads((tmp_path / "eval" / "tiny.json").read_text())["splits"]["train"]["spuriosity_drift"]
    assert got["masked_kl"] == pytest.approx(0, abs=1e-6) and got["kl"] == pytest.approx(0, abs=1e-6)
    assert got["n_images"] == len(TRAIN_YP)


def test_wiseft_drift_per_alpha_without_a_second_decode(scored, drift, monkeypatch):
    """WiSE-FT: alpha 0 is the teacher (drift 0), alpha 1 the run (its hand-computed drift), every
    alpha measured on the same decoded batches (each image decoded once)."""
    cfg = drift_cfg(scored, drift, [train_target(scored)], wiseft_alphas=[0.0, 0.5, 1.0], wiseft_alpha=0.5)
    decoded = count_decodes(monkeypatch)
    out = evaluate.run(cfg, {"tiny": scored.check}, "wiseft", 0, str(drift.ckpt), wiseft=True)["tiny"]
    assert set(decoded.values()) == {1} and len(decoded) == len(TRAIN_YP)
    by_alpha = {p["alpha"]: p["splits"]["train"]["spuriosity_drift"] for p in out["wiseft"]}
    assert by_alpha[0.0]["masked_kl"] == pytest.approx(0, abs=1e-6) and by_alpha[0.0]["kl"] == pytest.approx(0, abs=1e-6)
    masked, unmasked = drift_by_loop(scored, drift, drift.theta1)
    assert by_alpha[1.0]["masked_kl"] == pytest.approx(masked, rel=1e-4)
    assert by_alpha[1.0]["kl"] == pytest.approx(unmasked, rel=1e-4)
    assert by_alpha[0.5]["kl"] > 1e-4 and out["splits"]["train"]["spuriosity_drift"] == by_alpha[0.5]
