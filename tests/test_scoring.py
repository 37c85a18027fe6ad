"""How a run is scored (stages/method/scoring.py): WiSE-FT's interpolation, the head on the run's
device, the run's autocast reaching the image encoder, and the group weights of a set without a
train split. Several of these tests kill mutants that survived bench/mutation.sh (docs/testing.md).

Expected values are hand-computed; all of them are exact in binary floating point.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stages.datasets.base import ClassificationSet, ImageList
from stages.method.scoring import evaluate_splits, interpolate, make_head, split_metrics
from stages.method.zeroshot import LinearHead

META = torch.device("meta")   # a device other than the CPU that the CPU-only tests can build on


def group_set(n_groups: int = 4) -> ClassificationSet:
    """A two-class group-shift set (group = 2 * label + attribute), with no image of its own."""
    return ClassificationSet(name="toy", root=Path("."), split="test", dataset=ImageList([]), classnames=["land", "water"],
                             templates=["a {}."], group_names=[f"g{g}" for g in range(n_groups)], n_attributes=2)


def test_interpolate_mixes_float_weights_and_keeps_the_fine_tuned_integer_buffers():
    theta0 = {"w": torch.tensor([0.0, 4.0]), "steps": torch.tensor(3)}
    theta1 = {"w": torch.tensor([2.0, 8.0]), "steps": torch.tensor(7)}
    mixed = interpolate(theta0, theta1, 0.25)
    # 0.75 * [0, 4] + 0.25 * [2, 8] = [0.5, 5]
    assert torch.equal(mixed["w"], torch.tensor([0.5, 5.0]))
    # an integer buffer (a counter, an index) is the fine-tuned model's, not a float average (4.0)
    assert mixed["steps"].dtype == torch.int64 and mixed["steps"].item() == 7
    assert torch.equal(interpolate(theta0, theta1, 0.0)["w"], theta0["w"])
    assert torch.equal(interpolate(theta0, theta1, 1.0)["w"], theta1["w"])


def test_split_metrics_without_train_counts_weight_the_groups_by_the_split_itself():
    # A group-shift set with no train split (train_counts None), whose last group has no sample:
    # groups 2y+a = [0, 1, 2, 2, 2], group 3 empty.
    y = torch.tensor([0, 0, 1, 1, 1])
    attribute = torch.tensor([0, 1, 0, 0, 0])
    pred = torch.tensor([0, 1, 1, 0, 1])       # right, wrong, right, wrong, right: 3/5
    m = split_metrics(group_set(), pred, y, attribute, None)
    assert m["n"] == 5 and m["accuracy"] == pytest.approx(60.0)
    assert m["group_size"] == [1, 1, 3, 0]
    assert m["group_accuracy"][:3] == pytest.approx([100.0, 0.0, 200 / 3]) and m["group_accuracy"][3] is None
    assert m["worst_group"] == 0.0
    # weighted by the split's own group sizes [1, 1, 3]: (1 * 1 + 1 * 0 + 3 * 2/3) / 5 = the average
    assert m["adjusted_average"] == pytest.approx(60.0) and m["average"] == pytest.approx(60.0)


def test_split_metrics_of_a_set_without_groups_is_its_accuracy():
    plain = ClassificationSet(name="toy", root=Path("."), split="test", dataset=ImageList([]), classnames=["a", "b"],
                              templates=["{}"])
    m = split_metrics(plain, torch.tensor([0, 1, 1, 1]), torch.tensor([0, 1, 0, 1]), torch.full((4,), -1), None)
    assert m == {"accuracy": 75.0, "n": 4}


# loading real weights into meta parameters is a no-op that torch warns about: only the device is asserted
@pytest.mark.filterwarnings("ignore:.*meta parameter")
def test_a_runs_linear_head_is_loaded_on_the_runs_device():
    state = {"linear.weight": torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]), "linear.bias": torch.zeros(3)}
    head = make_head(None, None, ["a", "b", "c"], ["{}"], torch.device("cpu"), state)
    assert isinstance(head, LinearHead) and not head.training
    assert torch.equal(head.linear.weight, state["linear.weight"])
    # [0.6, 0.8] is unit-norm: logits = W x = [0.6, 1.6, 1.8]
    assert torch.allclose(head(torch.tensor([[0.6, 0.8]])), torch.tensor([[0.6, 1.6, 1.8]]))
    # on a GPU the features are on the GPU: the head must be where they are
    assert make_head(None, None, ["a", "b", "c"], ["{}"], META, state).linear.weight.device == META


class TextTower(torch.nn.Module):
    """A stand-in for CLIP's text tower: records where its tokens are; feature = the token ids."""

    def __init__(self):
        super().__init__()
        self.devices = []

    def encode_text(self, tokens):
        self.devices.append(tokens.device)
        return tokens.float()


def tokenize(texts):
    """Token ids [N, 2]: the text's length and its number of 'a's (always on the CPU, as open_clip's)."""
    return torch.tensor([[len(t), t.count("a")] for t in texts])


def test_the_zeroshot_head_encodes_the_class_prompts_on_the_runs_device():
    tower = TextTower()
    head = make_head(tower, tokenize, ["ab", "b"], ["{}", "{}x"], torch.device("cpu"), None)
    # class "ab": prompts "ab" [2, 1] and "abx" [3, 1]; class "b": "b" [1, 0], "bx" [2, 0]
    # each normalised, averaged over the templates, normalised again; the head is feats @ weights.T
    ab = torch.nn.functional.normalize(
        torch.nn.functional.normalize(torch.tensor([[2.0, 1.0], [3.0, 1.0]]), dim=-1).mean(0), dim=0)
    assert torch.allclose(head(torch.eye(2)), torch.stack([ab, torch.tensor([1.0, 0.0])], dim=1))
    assert tower.devices == [torch.device("cpu")]
    make_head(tower, tokenize, ["ab", "b"], ["{}"], META, None)
    assert tower.devices[-1] == META


class ImageTower(torch.nn.Module):
    """A stand-in for CLIP's image tower: one linear map, recording the dtype it computed in."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        self.dtypes = []

    def encode_image(self, images):
        out = self.proj(images)
        self.dtypes.append(out.dtype)
        return out


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_evaluate_splits_encodes_the_images_under_the_runs_autocast(dtype):
    # the images' features are their first two pixels: [1, 0] -> class 0, [0, 1] -> class 1
    images = torch.tensor([[1.0, 0.0, 5.0], [0.0, 1.0, 5.0], [1.0, 0.0, 5.0]])
    loader = [(images, torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.arange(3))]
    tower = ImageTower()
    out = evaluate_splits(tower, lambda feats: feats, {"test": group_set()}, {"test": loader},
                          torch.device("cpu"), None, dtype)
    # bf16 runs (finetune.precision) are scored under bf16 autocast too, fp32 runs in float32
    assert tower.dtypes == [dtype or torch.float32]
    assert out["test"]["accuracy"] == pytest.approx(200 / 3)
    assert out["test"]["group_size"] == [1, 0, 1, 1]


def test_a_set_scored_among_a_subset_of_the_heads_classes_predicts_only_those():
    # ImageNet-R/-A: 200 of the head's 1000 classes. Here: head classes [a, b, c], the set's [b, c];
    # the features' first two pixels are the logits of a and b, c's logit is 0.
    subset = ClassificationSet(name="toy", root=Path("."), split="test", dataset=ImageList([]), classnames=["a", "b", "c"],
                               templates=["{}"], class_subset=[1, 2])
    images = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, -1.0, 0.0]])
    loader = [(images, torch.tensor([1, 1, 2]), torch.full((3,), -1), torch.arange(3))]
    head = lambda feats: torch.cat([feats, torch.zeros(len(feats), 1)], dim=1)   # noqa: E731
    out = evaluate_splits(ImageTower(), head, {"test": subset}, {"test": loader}, torch.device("cpu"), None)
    # logits [1, 0, 0] -> b (a is not one of the set's classes; b before c on a tie), [0, 1, 0] -> b,
    # [.71, -.71, 0] -> c: all three right; among all three classes the first and last would be a
    assert out["test"] == {"accuracy": 100.0, "n": 3}


def test_a_group_targets_test_split_is_calibrated_on_its_val_split_never_on_itself():
    """The plumbing of the threshold-free metrics: scored through a head whose score l_1 - l_0 is
    the angle of the image's first two pixels, val's threshold reaches test, val gets none."""
    import math

    def split(scores: dict):
        s = [v for g in sorted(scores) for v in scores[g]]
        groups = [g for g in sorted(scores) for _ in scores[g]]
        images = torch.tensor([[math.cos(v), math.sin(v), 0.0] for v in s])
        return [(images, torch.tensor([g // 2 for g in groups]), torch.tensor([g % 2 for g in groups]),
                 torch.arange(len(s)))]

    val_s = {0: [-1.0, -0.6], 1: [0.2, 0.6], 2: [1.4, 1.8], 3: [2.2, 2.6]}
    test_s = {0: [-0.8, -0.4], 1: [0.4, 1.2], 2: [0.9, 1.3, 1.8], 3: [2.0, 2.4]}   # its own best: 66.7
    head = lambda f: torch.stack([torch.zeros(len(f)), torch.atan2(f[:, 1], f[:, 0])], dim=1)   # noqa: E731
    out = evaluate_splits(ImageTower(), head, {"val": group_set(), "test": group_set()},
                          {"val": split(val_s), "test": split(test_s)}, torch.device("cpu"), [3, 1, 1, 3])
    assert out["test"]["worst_group"] == 0.0                              # the raw head: group 1 all wrong
    assert out["test"]["worst_group_val_bias"] == pytest.approx(50.0)     # val's threshold 1.0
    assert out["test"]["worst_group_label_free"] == pytest.approx(50.0)   # balanced training classes: val's median 1.0
    assert out["test"]["cross_group_auroc"] == pytest.approx(5 / 6)
    assert out["val"]["worst_group_val_bias"] is None and out["val"]["worst_group_label_free"] is None
    assert out["val"]["cross_group_auroc"] == pytest.approx(1.0)
