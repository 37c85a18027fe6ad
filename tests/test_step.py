"""The training step's plumbing (stages/finetune/step.py) on small stand-ins, no data set: which
parameters each method trains, the batch on the run's device with its tokens trimmed, no teacher
forward without a regulariser, and every loss on the features' device.

The CPU-only machines cannot run on a GPU; the `meta` device stands in for "a device other than
the CPU": a tensor left on the CPU meets a meta tensor and PyTorch refuses, as it refuses a CPU
tensor next to a CUDA one. Several of these tests kill mutants that survived bench/mutation.sh
(docs/testing.md).
"""

from __future__ import annotations

import contextlib
import math

import open_clip
import pytest
import torch

from helpers import TINY_MODEL_CFG
from stages.finetune import distributed
from stages.finetune.captions import Captions
from stages.finetune.runs import RunConfig
from stages.finetune.step import Batch, compute_loss, prepare_batch, set_trainable
from stages.method.registry import METHODS, Method

META = torch.device("meta")
CE_KL = Method("ce", "kl")   # not in the registry: the only case where finetune.kl_scale decides


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return open_clip.CLIP(**TINY_MODEL_CFG)


# (method, kl_scale) -> (text tower trains, logit scale trains); the image tower always trains.
# The text tower is reached by FLYP's captions or by a regulariser's spurious captions; the
# student's logit scale by FLYP's loss, or by the unmasked KL when it uses the student's scale
# (StarFT's regulariser uses the teacher's scale tau0).
TRAINABLE = [
    ("ft", "student", False, False),
    ("lpft", "student", False, False),
    ("flyp", "student", True, True),
    ("flyp_kl", "student", True, True),
    ("flyp_kl", "teacher", True, True),
    ("starft", "student", True, True),
    ("starft_ce", "student", True, False),
    ("starft_ce", "teacher", True, False),
    (CE_KL, "student", True, True),
    (CE_KL, "teacher", True, False),
]


@pytest.mark.parametrize("method,kl_scale,text,scale", TRAINABLE,
                         ids=[f"{m if isinstance(m, str) else 'ce_kl'}-{k}" for m, k, _, _ in TRAINABLE])
def test_set_trainable_freezes_what_the_loss_does_not_reach(clip, method, kl_scale, text, scale):
    method = METHODS[method] if isinstance(method, str) else method
    set_trainable(clip, method, kl_scale)
    params = dict(clip.named_parameters())
    assert params["logit_scale"].requires_grad == scale
    assert all(p.requires_grad for n, p in params.items() if n.startswith("visual."))
    text_params = [n for n in params if not n.startswith("visual.") and n != "logit_scale"]
    assert "token_embedding.weight" in text_params and "transformer.resblocks.0.mlp.c_fc.weight" in text_params
    assert all(params[n].requires_grad == text for n in text_params)


def test_a_run_that_names_no_kl_scale_trains_the_students_scale(clip):
    """The default is the schema's alone (no function restates it): a run configuration without
    `kl_scale` is filled with "student", which trains the student's scale under the unmasked KL."""
    cfg = RunConfig.from_dict({"name": "ce_kl", "method": "flyp_kl"})
    set_trainable(clip, CE_KL, "teacher")
    set_trainable(clip, CE_KL, cfg.kl_scale)
    assert cfg.kl_scale == "student" and clip.logit_scale.requires_grad


EOT = 49407   # CLIP's end-of-text token, the highest id: trimming cuts after the last one


def toy_captions(trim: bool) -> Captions:
    """Four caption rows of width 8: rows 0, 1 are the class captions, rows 2, 3 spurious ones."""
    tokens = torch.tensor([[49406, 10, EOT, 0, 0, 0, 0, 0],
                           [49406, 11, 12, EOT, 0, 0, 0, 0],
                           [49406, 13, EOT, 0, 0, 0, 0, 0],
                           [49406, 14, 15, 16, 17, EOT, 0, 0]])
    return Captions(tokens=tokens, caption_row=torch.tensor([0, 1]), spurious_rows=torch.tensor([[2], [3]]), trim=trim)


def toy_raw(spurious=(2, 2, 3)):
    y = torch.tensor([0, 0, 1])
    return torch.zeros(3, 3, 4, 4), y, torch.tensor([7, 8, 9]), torch.tensor(spurious)


def test_prepare_batch_gives_each_distinct_caption_once_cut_after_the_last_end_of_text():
    captions = toy_captions(trim=True)
    batch = prepare_batch(toy_raw(spurious=(2, 2, 2)), captions, METHODS["starft"], torch.device("cpu"))
    # captions of the batch: class rows [0, 0, 1] then spurious rows [2, 2, 2]: distinct rows 0, 1, 2,
    # whose last end-of-text token is at position 3 (row 1): 4 columns are kept of 8
    assert batch.tokens.tolist() == captions.tokens[[0, 1, 2], :4].tolist()
    assert batch.inverse.tolist() == [0, 0, 1, 2, 2, 2]
    untrimmed = prepare_batch(toy_raw(spurious=(2, 2, 2)), toy_captions(trim=False), METHODS["starft"],
                              torch.device("cpu"))
    assert untrimmed.tokens.shape == (3, 8)
    # FT trains no text: no caption at all
    ft = prepare_batch(toy_raw(), captions, METHODS["ft"], torch.device("cpu"))
    assert ft.tokens is None and ft.inverse is None


@pytest.mark.parametrize("method", ["starft", "ft"])
def test_prepare_batch_puts_the_batch_on_the_runs_device(method):
    batch = prepare_batch(toy_raw(), toy_captions(trim=True), METHODS[method], META)
    assert batch.images.device == META and batch.y.device == META and batch.spurious.device == META
    if method == "starft":
        assert batch.tokens.device == META and batch.inverse.device == META
    # the dataset indices of the teacher's image cache stay on the CPU (no device sync to read them)
    assert batch.index.device.type == "cpu"


class StandIn(torch.nn.Module):
    """The Student's forward on fixed features: (image [b, D], text [u, D] or None, logits, scale)."""

    def __init__(self, image, text, logits, scale):
        super().__init__()
        self.out = image, text, logits, scale

    def forward(self, images, tokens=None):
        image, text, logits, scale = self.out
        return image, (text if tokens is not None else None), logits, scale


def no_teacher(images, index):
    raise AssertionError("the frozen teacher's image tower ran for a method without a regulariser")


def toy_step(method: str, device, kl_scale: str = "student", superclasses=None):
    """A batch of 2 samples of classes 0, 1 with float64 features of a 2-d world, on `device`.

    FLYP's captions are the distinct rows 0, 1 of the student's text features, the spurious ones
    (flyp_kl) rows 2, 3; the teacher's spurious text features are rows 0, 1 of its table.
    """
    f64 = dict(dtype=torch.float64, device=device)
    image = torch.tensor([[3.0, 4.0], [1.0, 0.0]], **f64)                  # normalised: [.6, .8], [1, 0]
    text = torch.tensor([[0.0, 2.0], [1.0, 0.0], [1.0, 1.0], [1.0, -1.0]], **f64)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], **f64)
    m = METHODS[method]
    n_captions = (m.objective == "flyp") + (m.regularizer is not None)
    batch = Batch(images=torch.zeros(2, 3, 4, 4, device=device), y=torch.tensor([0, 1], device=device),
                  index=torch.arange(2), spurious=torch.tensor([0, 1] if m.regularizer else [-1, -1], device=device),
                  tokens=torch.zeros(2 * n_captions, 3, dtype=torch.long, device=device) if n_captions else None,
                  inverse=torch.arange(2 * n_captions, device=device) if n_captions else None)
    model = StandIn(image, text[:2 * n_captions], logits, torch.tensor(10.0, **f64))
    teacher_image = torch.tensor([[0.0, 1.0], [1.0, 0.0]], **f64)
    teacher = (lambda images, index: teacher_image) if m.regularizer else no_teacher
    return compute_loss(model, teacher, torch.tensor([[1.0, 0.0], [0.0, 1.0]], **f64), 100.0, m, batch, 0.5,
                        distributed.Context(), contextlib.nullcontext, kl_scale, superclasses)


@pytest.mark.parametrize("method", ["flyp", "ft"])
def test_without_a_regulariser_the_teacher_does_not_run_and_the_loss_is_the_objective(method):
    loss, loss_ft, reg, scale, _ = toy_step(method, torch.device("cpu"))
    assert reg.item() == 0.0 and loss.item() == loss_ft.item()
    if method == "flyp":
        # logits 10 * <image_i, text_j>: [[8, 6], [0, 10]]; each image's and each text's softmax
        # CE: row 0: log(1 + e^-2), row 1: log(1 + e^-10); column 0: log(1 + e^-8), column 1: log(1 + e^-4)
        expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-10))
                    + math.log1p(math.exp(-8)) + math.log1p(math.exp(-4))) / 4
    else:
        # CE of the head's logits [[2, 0], [0, 1]] with labels [0, 1]
        expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2
    # float64 features stay float64: a few roundings of 1e-16 each
    assert loss_ft.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("method", ["flyp", "ft"])
def test_the_losses_are_on_the_features_device(method):
    # on a GPU the loop stacks (loss, L_ft, L_reg) on the device: each must be there, and the
    # contrastive targets too (cross-entropy refuses targets on another device)
    loss, loss_ft, reg, _, _ = toy_step(method, META)
    assert loss.device == META and loss_ft.device == META and reg.device == META


def test_the_unmasked_kl_uses_the_scale_kl_scale_names():
    reg = {k: toy_step("flyp_kl", torch.device("cpu"), kl_scale=k).regularizer.item() for k in ("student", "teacher")}
    # the student's scale (10) against the teacher's (100) on the same features: different numbers
    assert reg["student"] != pytest.approx(reg["teacher"], rel=1e-3)
    # StarFT's regulariser offers no choice: tau0 on both sides whatever kl_scale says
    star = {k: toy_step("starft", torch.device("cpu"), kl_scale=k).regularizer.item() for k in ("student", "teacher")}
    assert star["student"] == star["teacher"]


def test_a_regulariser_added_by_the_recipe_reaches_the_loss_and_the_report(monkeypatch):
    """docs/architecture.md's recipe, followed for a new regulariser (twice the unmasked KL at the
    teacher's scale): a REGULARIZERS entry, a REGULARIZER_LOSSES entry and a method. Nothing else
    is touched, and the step trains what its loss reads, computes it, and the report names it."""
    from stages.method import losses, registry
    from stages.report.notes import run_settings

    monkeypatch.setitem(registry.REGULARIZERS, "twice_kl", registry.Regularizer("twice the KL", label_masked=False,
                                                                                    scale_option=False))
    monkeypatch.setitem(losses.REGULARIZER_LOSSES, "twice_kl",
                        lambda *a: 2 * losses.kl_regularizer(a[0], a[1], a[2], a[3], a[5], a[6]))
    monkeypatch.setitem(METHODS, "flyp_twice", Method("flyp", "twice_kl"))
    kl = toy_step("flyp_kl", torch.device("cpu"), kl_scale="teacher").regularizer.item()
    twice = toy_step("flyp_twice", torch.device("cpu"), kl_scale="student")   # no scale option: tau0 anyway
    assert twice.regularizer.item() == pytest.approx(2 * kl, rel=1e-12) and kl > 0
    model = open_clip.CLIP(**TINY_MODEL_CFG)
    set_trainable(model, METHODS["flyp_twice"], "student")
    assert model.token_embedding.weight.requires_grad and model.logit_scale.requires_grad   # FLYP's
    cfg = {"method": "flyp_twice", "name": "flyp_twice", "lambda": 0.5, "schedule": "diminishing",
           "kl_scale": "student", "spurious_types": None, "spurious_sampling": "type_then_template", "epochs": 2}
    row = run_settings([{"method": "flyp_twice", "seed": 0, "train_config": cfg}], ["flyp_twice"]).iloc[0]
    assert row["Regulariser"] == "twice the KL, lambda 0.5 diminishing, tau0 for both"


def test_a_superclass_mask_reaches_the_regulariser_and_the_share_is_measured():
    """Classes 0 and 1 of the toy batch in one superclass: masked by class, the other class's
    caption is all a row's target holds, all of it on the own superclass (share 1); masked by
    superclass, no row keeps a caption (no target: share 0). (With one caption left per row the
    regulariser itself is 0 here; tests/test_losses.py checks the mask's formula.)"""
    from stages.finetune.step import Superclasses

    one = torch.tensor([0, 0])
    by_class = toy_step("starft", torch.device("cpu"), superclasses=Superclasses(one, mask=False))
    plain = toy_step("starft", torch.device("cpu"))
    assert by_class.regularizer.item() == plain.regularizer.item()
    assert by_class.superclass_share.item() == pytest.approx(1.0) and plain.superclass_share.item() == 0.0
    by_superclass = toy_step("starft", torch.device("cpu"), superclasses=Superclasses(one, mask=True))
    assert by_superclass.regularizer.item() == 0.0 and by_superclass.superclass_share.item() == 0.0
    # two superclasses: the superclass mask is the class mask, and no kept caption shares a superclass
    two = toy_step("starft", torch.device("cpu"), superclasses=Superclasses(torch.tensor([0, 1]), mask=True))
    assert two.regularizer.item() == plain.regularizer.item() and two.superclass_share.item() == 0.0


def test_the_runs_table_gives_the_kl_targets_superclass_share_by_method():
    """The share is the mean over a method's seeds; a method without a KL target gets a dash, and
    the column is absent where no run recorded a share (no superclasses declared)."""
    from stages.report.notes import SHARE, run_settings

    def record(method, seed, share=None):
        cfg = {"method": method, "name": method, "lambda": 0.5, "schedule": "diminishing", "kl_scale": "student",
               "spurious_types": None, "spurious_sampling": "type_then_template", "epochs": 2}
        return {"method": method, "seed": seed, "train_config": cfg, "kl_target_superclass_share": share}

    records = [record("starft", 0, 0.70), record("starft", 1, 0.75), record("flyp", 0), record("flyp", 1)]
    table = run_settings(records, ["flyp", "starft"]).set_index("Method")
    assert table.loc["starft", SHARE] == "72.5%" and table.loc["flyp", SHARE] == "–"
    assert SHARE not in run_settings([record("starft", 0), record("flyp", 0)], ["flyp", "starft"]).columns
