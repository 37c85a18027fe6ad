"""The losses against explicit formulas on small hand-made inputs (float64 loops, no -1e8 trick)."""

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from stages.method.losses import clip_contrastive_loss, diminishing_lambda, kl_regularizer, star_regularizer


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1)


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def explicit_star(si, st, ti, tt, labels, scale):
    """(1/B) sum_i KL(p_i || q_i) with p, q the softmaxes over the captions j of another class."""
    B = len(labels)
    total = 0.0
    for i in range(B):
        others = [j for j in range(B) if labels[j] != labels[i]]
        if not others:
            continue  # every entry masked: uniform vs uniform, KL 0
        p = softmax([scale * float(ti[i] @ tt[j]) for j in others])
        q = softmax([scale * float(si[i] @ st[j]) for j in others])
        total += kl(p, q)
    return total / B


# Hand-made 3-d features: 4 images, 4 spurious captions; the student moved a little.
TI = unit([1, 0, 0], [0.8, 0.6, 0], [0, 1, 0.2], [0.3, 0.3, 0.9])
TT = unit([1, 0.2, 0], [0, 1, 0], [0.5, 0.5, 0.5], [0, 0.1, 1])
SI = unit([0.9, 0.1, 0.1], [0.7, 0.7, 0], [0.1, 1, 0], [0.2, 0.5, 0.8])
ST = unit([1, 0, 0.3], [0.2, 1, 0], [0.4, 0.6, 0.4], [0.1, 0, 1])


def star(labels, scale=5.0, si=SI, st=ST, ti=TI, tt=TT):
    return star_regularizer(student_image=si, student_text=st, teacher_image=ti, teacher_text=tt,
                            labels=torch.tensor(labels), logit_scale=scale)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3], [2, 0, 0, 0]],
                         ids=["two-pairs", "interleaved", "class-seen-once", "all-distinct", "one-vs-three"])
def test_star_regularizer_matches_explicit_formula(labels):
    got = star(labels)
    want = explicit_star(SI, ST, TI, TT, labels, 5.0)
    assert want > 0
    assert float(got) == pytest.approx(want, rel=1e-6, abs=1e-12)


def test_star_regularizer_single_class_batch_is_zero_not_nan():
    si, st = SI.clone().requires_grad_(), ST.clone().requires_grad_()
    got = star([1, 1, 1, 1], si=si, st=st)
    assert float(got.detach()) == 0.0
    got.backward()
    assert torch.isfinite(si.grad).all() and torch.isfinite(st.grad).all()
    assert si.grad.abs().max() == 0


def test_star_regularizer_masks_the_diagonal_and_same_class_pairs():
    # Row i of the loss depends only on the captions of the other classes: moving a class-0 caption
    # leaves the gradient of the class-0 images unchanged and changes that of the class-1 images.
    labels = [0, 0, 1, 1]

    def image_grad(st):
        si = SI.clone().requires_grad_()
        star(labels, si=si, st=st).backward()
        return si.grad

    moved = ST.clone()
    moved[0] = unit([0.0, -1.0, 0.5])[0]
    before, after = image_grad(ST), image_grad(moved)
    assert torch.allclose(before[:2], after[:2], atol=1e-15)
    assert not torch.allclose(before[2:], after[2:], atol=1e-6)


def test_star_regularizer_uses_teacher_scale_and_is_zero_at_the_teacher():
    assert float(star([0, 1, 0, 1], si=TI, st=TT)) == pytest.approx(0.0, abs=1e-15)
    a, b = star([0, 1, 2, 3], scale=5.0), star([0, 1, 2, 3], scale=50.0)
    assert float(a) != pytest.approx(float(b), rel=1e-3)
    assert float(b) == pytest.approx(explicit_star(SI, ST, TI, TT, [0, 1, 2, 3], 50.0), rel=1e-6)


def test_star_regularizer_is_permutation_invariant_and_accepts_tensor_scale():
    labels = torch.tensor([0, 0, 1, 2])
    perm = torch.tensor([2, 0, 3, 1])
    a = star(labels.tolist(), scale=torch.tensor(5.0))
    b = star_regularizer(SI[perm], ST[perm], TI[perm], TT[perm], labels[perm], 5.0)  # positional call
    assert float(a) == pytest.approx(float(b), rel=1e-9)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3], [2, 0, 0, 0]],
                         ids=["two-pairs", "interleaved", "class-seen-once", "all-distinct", "one-vs-three"])
def test_star_regularizer_of_bf16_features_computes_in_float32(labels):
    """bf16 features (autocast) give the float32 regulariser of the same, bf16-rounded, features.

    bf16 -> float32 is exact, so once the features are widened the two calls run the same float32
    operations on the same numbers; they may differ only by a kernel's summation order in the
    3-term dot products and <= 4-term sums, a few float32 ulps (6e-8) per term, amplified ~10x by
    the cancellation between the KL's terms (each ~0.1, the sum ~0.02-0.1): below 1e-6 relative.
    A product taken in bf16 instead rounds every logit (size up to 5) to 8 significant bits, an
    error of up to 2^-9 x 5 = 1e-2, which moves these KLs by 0.5-2% of themselves.

    The float64 formula on the rounded features bounds the float32 result independently of the
    code: each logit is off by < 1e-6 (3 roundings of a 3-term dot product of unit vectors, times
    the scale 5), and KL(p || softmax(S)) moves by at most sum_j |q_j - p_j| x max |dS| <= 2 max |dS|
    per row, likewise for T: < 4e-6 absolute (2e-4 of the smallest value here, 0.02).
    """
    labels = torch.tensor(labels)
    rounded = [x.bfloat16() for x in (SI, ST, TI, TT)]
    bf = star_regularizer(*rounded, labels, 5.0)
    f32 = star_regularizer(*[x.float() for x in rounded], labels, 5.0)
    assert bf.dtype == torch.float32 and f32.dtype == torch.float32
    assert float(bf) == pytest.approx(float(f32), rel=1e-6, abs=0)
    want = explicit_star(*[x.double() for x in rounded], labels.tolist(), 5.0)
    assert float(bf) == pytest.approx(want, rel=0, abs=4e-6)


def test_kl_regularizer_has_no_mask_and_uses_the_student_scale():
    def explicit(student_scale):
        B = len(SI)
        return sum(kl(softmax([5.0 * float(TI[i] @ TT[j]) for j in range(B)]),
                      softmax([student_scale * float(SI[i] @ ST[j]) for j in range(B)])) for i in range(B)) / B

    kw = dict(student_image=SI, student_text=ST, teacher_image=TI, teacher_text=TT, logit_scale=5.0)
    assert float(kl_regularizer(**kw)) == pytest.approx(explicit(5.0), rel=1e-6)
    assert float(kl_regularizer(**kw, student_logit_scale=8.0)) == pytest.approx(explicit(8.0), rel=1e-6)


def test_contrastive_loss_matches_explicit_formula_and_open_clip():
    scale = 7.0
    B = len(SI)
    logits = [[scale * float(SI[i] @ ST[j]) for j in range(B)] for i in range(B)]
    i2t = -sum(math.log(softmax(logits[i])[i]) for i in range(B)) / B
    t2i = -sum(math.log(softmax([logits[j][i] for j in range(B)])[i]) for i in range(B)) / B
    got = clip_contrastive_loss(SI, ST, scale)
    assert float(got) == pytest.approx((i2t + t2i) / 2, rel=1e-6)
    ref = open_clip.loss.ClipLoss()(SI, ST, torch.tensor(scale, dtype=torch.float64))
    assert float(got) == pytest.approx(float(ref), rel=1e-6)


def test_contrastive_loss_treats_same_class_duplicates_as_negatives():
    text = ST.clone()
    text[1] = text[0]          # two samples of one class share their caption
    B, scale = 4, 3.0
    logits = [[scale * float(SI[i] @ text[j]) for j in range(B)] for i in range(B)]
    i2t = -sum(math.log(softmax(logits[i])[i]) for i in range(B)) / B
    t2i = -sum(math.log(softmax([logits[j][i] for j in range(B)])[i]) for i in range(B)) / B
    assert float(clip_contrastive_loss(SI, text, scale)) == pytest.approx((i2t + t2i) / 2, rel=1e-6)


def test_diminishing_schedule():
    assert [diminishing_lambda(0.5, e, 5) for e in range(5)] == pytest.approx([0.4, 0.3, 0.2, 0.1, 0.0])
    assert diminishing_lambda(0.5, 3, 5, "constant") == 0.5
    with pytest.raises(ValueError, match="finetune.schedule"):
        diminishing_lambda(0.5, 0, 5, "linear")


# ---------------------------------------------------------------------------------------------
# The superclass mask (finetune.star_mask: superclass) and the KL target's share on an image's
# own superclass. Labels of 4 images in 3 classes (uneven: 2, 1, 1), superclasses [0, 0, 1].

from stages.method.losses import target_share  # noqa: E402

LABELS, SUPER = [0, 1, 0, 2], [0, 0, 1]


def explicit_share(ti, tt, labels, superclasses, scale, mask_by_superclass):
    """Per image, the teacher's softmax over the captions the mask keeps; the mass on those of its
    own superclass; mean over images whose row keeps any caption."""
    sup = [superclasses[y] for y in labels]
    masked_by = sup if mask_by_superclass else labels
    shares = []
    for i in range(len(labels)):
        kept = [j for j in range(len(labels)) if masked_by[j] != masked_by[i]]
        if not kept:
            continue
        p = softmax([scale * float(ti[i] @ tt[j]) for j in kept])
        shares.append(sum(pj for pj, j in zip(p, kept) if sup[j] == sup[i]))
    return sum(shares) / len(shares)


def test_the_superclass_mask_is_the_star_formula_on_superclass_labels():
    mapped = [SUPER[y] for y in LABELS]                       # [0, 0, 0, 1]
    assert float(star(mapped)) == pytest.approx(explicit_star(SI, ST, TI, TT, mapped, 5.0), rel=1e-6)
    assert float(star(mapped)) != pytest.approx(float(star(LABELS)), rel=1e-3)   # it masks more


def test_the_kl_targets_share_on_the_own_superclass_is_the_formula():
    y, sup = torch.tensor(LABELS), torch.tensor(SUPER)[torch.tensor(LABELS)]
    same = sup[:, None] == sup[None, :]
    # class mask: image 0 keeps captions 1 (same superclass) and 3 (the other)
    got = target_share(TI, TT, 5.0, y, same)
    assert float(got) == pytest.approx(explicit_share(TI, TT, LABELS, SUPER, 5.0, False), rel=1e-9)
    assert 0 < float(got) < 1
    # superclass mask: no kept caption shares the image's superclass; the one image alone in its
    # superclass keeps all the others, and those rows count
    assert float(target_share(TI, TT, 5.0, sup, same)) == 0.0
    # no mask (the unmasked KL): own-class captions count too
    assert float(target_share(TI, TT, 5.0, None, same)) == pytest.approx(
        sum(sum(softmax([5.0 * float(TI[i] @ TT[j]) for j in range(4)])[j] for j in range(4) if same[i, j])
            for i in range(4)) / 4, rel=1e-9)
