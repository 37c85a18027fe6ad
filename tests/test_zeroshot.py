"""Zero-shot heads and feature extraction (stages/method/zeroshot.py) on small stand-ins.

`encode_images` is decorated (torch.no_grad), which mutmut 3 does not mutate; this test pins what
a hand mutation showed no other fast test pins (docs/testing.md).
"""

from __future__ import annotations

import torch

from stages.method.zeroshot import class_prompts, encode_images


class Identity(torch.nn.Module):
    def encode_image(self, images):
        return images


def test_encode_images_gives_unit_features_with_labels_and_attributes_in_loader_order():
    # the linear probe (lp, lpft) fits its head on these features: they must be the normalised ones
    loader = [(torch.tensor([[3.0, 4.0], [0.0, 2.0]]), torch.tensor([1, 0]), torch.tensor([0, 1]), torch.arange(2)),
              (torch.tensor([[-5.0, 0.0]]), [1], [1], torch.tensor([2]))]
    feats, y, place = encode_images(Identity(), loader, torch.device("cpu"))
    assert torch.equal(feats, torch.tensor([[0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]))
    assert y.tolist() == [1, 0, 1] and place.tolist() == [0, 1, 1]


def test_class_prompts_are_one_row_per_class_one_column_per_template():
    assert class_prompts(["cat", "dog"], ["a {}.", "the {} here"]) == [["a cat.", "the cat here"],
                                                                       ["a dog.", "the dog here"]]
