"""The synthetic world's teacher: the tiny CLIP's architecture, its input tensors, and its
zero-shot check on a fresh, group-balanced set of SynthBirds images (class, scene, per group).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from ..datasets.waterbirds import group_of
from ..method.metrics import group_accuracies
from ..method.zeroshot import zeroshot_weights
from .groups import CLASSNAMES, PLACES, SCENES, sample_groups, scenes_of, species_of
from .scenes import SCENE_WORDS
from .species import render

CONTEXT_LENGTH = 24


def tiny_clip_config(cfg: dict, image_size: int) -> dict:
    """open_clip model_cfg of the tiny CLIP (ViT on 32x32 images, small text transformer)."""
    return {
        "embed_dim": cfg["embed_dim"],
        "vision_cfg": {"image_size": image_size, "layers": cfg["layers"], "width": cfg["width"],
                       "patch_size": cfg["patch_size"], "head_width": 32, "mlp_ratio": 4.0},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": cfg["width"],
                     "heads": max(1, cfg["width"] // 32), "layers": cfg["text_layers"]},
    }


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised float [N, 3, H, W], as open_clip's eval transform does."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def zeroshot_check(model, tokenizer, n: int, image_size: int, seed: int) -> dict:
    """Zero-shot accuracy on a fresh, group-balanced set: class, scene type, and per group."""
    rng = np.random.default_rng(seed + 7)
    ys, places = sample_groups(n, None, rng)
    images = np.stack([render(rng.choice(species_of(y)), rng.choice(scenes_of(p)), image_size, rng)
                       for y, p in zip(ys, places)])
    model.eval()
    feats = F.normalize(model.encode_image(to_tensor(images)), dim=-1)
    class_w = zeroshot_weights(model, tokenizer, list(CLASSNAMES), ["This is a picture of a {}.", "a photo of a {}."], "cpu")
    # A place's text embedding: the mean over the names of its scenes ("the forest.", ...).
    scene_w = torch.stack([
        zeroshot_weights(model, tokenizer, [w for s, p in SCENES.items() if p == place for w in SCENE_WORDS[s]],
                         ["the {}."], "cpu").mean(0) for place in range(len(PLACES))])
    pred_y = (feats @ class_w.T).argmax(1).numpy()
    pred_place = (feats @ scene_w.T).argmax(1).numpy()
    accs = group_accuracies(pred_y, ys, group_of(ys, places), 4)
    return {"class_accuracy": 100 * float((pred_y == ys).mean()),
            "scene_accuracy": 100 * float((pred_place == places).mean()),
            "class_group_accuracy": [100 * float(a) for a in accs],
            "class_worst_group": 100 * float(np.min(accs)), "n": n}
