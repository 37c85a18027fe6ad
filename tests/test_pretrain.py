"""Pre-training the tiny CLIP: a learned temperature moves, a fixed one stays where it was set."""

import math

import numpy as np
import open_clip
import pytest
import torch

from stages.pretrain.run import train
from stages.synthetic.teacher import tiny_clip_config
from stages.synthetic.captions import generate_pretrain_set

CFG = {"steps": 6, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.1, "warmup_steps": 1, "logit_scale_lr_mult": 30,
       "width": 32, "layers": 1, "patch_size": 8, "text_layers": 1, "embed_dim": 16}


@pytest.fixture(scope="module")
def pretrain_set(tmp_path_factory):
    path = tmp_path_factory.mktemp("pre") / "set.npz"
    generate_pretrain_set(path, 256, correlation=0.9, seed=0)
    return np.load(path)


@pytest.mark.parametrize("fixed", [None, 100.0, 25.0])
def test_logit_scale_is_learned_or_fixed(pretrain_set, fixed):
    torch.manual_seed(0)
    model = open_clip.CLIP(**tiny_clip_config(CFG, 32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = train(model, pretrain_set["images"], pretrain_set["captions"], {**CFG, "logit_scale": fixed}, seed=0)
    scale = float(model.logit_scale.detach().exp())
    if fixed is None:
        assert scale != pytest.approx(1 / 0.07, rel=1e-3)           # moved from CLIP's initial value
    else:
        assert scale == pytest.approx(fixed, rel=1e-6)
        assert all(r["logit_scale"] == pytest.approx(fixed, rel=1e-6) for r in log)
    key = "visual.transformer.resblocks.0.mlp.c_fc.weight"
    assert not torch.equal(model.state_dict()[key], before[key])     # the weights train either way
    assert math.isfinite(log[-1]["loss"])
