"""The synthetic world's teacher: the tiny CLIP's architecture, its input tensors, and its
zero-shot checks: on a fresh, group-balanced set of SynthBirds images (class, scene, per group,
per species), and on fresh renditions of the source task's 16 classes (sketches; cartoons and
paintings, half in other colours, as synth_sketch and synth_rendition draw them).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from ..datasets.base import group_index
from ..method.metrics import group_accuracies
from ..method.zeroshot import zeroshot_weights
from .groups import CLASSNAMES, N_GROUPS, PLACES, SCENES, sample_groups, scenes_of, species_of
from .scenes import SCENE_WORDS
from .source import CLASSNAMES as SOURCE_CLASSNAMES
from .source import RENDITION_SETS, with_defaults
from .species import SPECIES_BY_NAME, render, render_sample
from .tiny_config import CONTEXT_LENGTH, tiny_clip_config  # noqa: F401  (the pretrain stage's names)



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
    species = [rng.choice(species_of(y)) for y in ys]
    images = np.stack([render(sp, rng.choice(scenes_of(p)), image_size, rng) for sp, p in zip(species, places)])
    model.eval()
    feats = F.normalize(model.encode_image(to_tensor(images)), dim=-1)
    class_w = zeroshot_weights(model, tokenizer, list(CLASSNAMES), ["This is a picture of a {}.", "a photo of a {}."], "cpu")
    # A place's text embedding: the mean over the names of its scenes ("the forest.", ...).
    scene_w = torch.stack([
        zeroshot_weights(model, tokenizer, [w for s, p in SCENES.items() if p == place for w in SCENE_WORDS[s]],
                         ["the {}."], "cpu").mean(0) for place in range(len(PLACES))])
    pred_y = (feats @ class_w.T).argmax(1).numpy()
    pred_place = (feats @ scene_w.T).argmax(1).numpy()
    accs = group_accuracies(pred_y, ys, group_index(ys, places, len(PLACES)), N_GROUPS)
    names = np.array([sp.name for sp in species])
    # one species the teacher misreads caps a group: the per-species accuracy says which
    per_species = {name: 100 * float((pred_y == ys)[names == name].mean()) for name in sorted(set(names))}
    return {"class_accuracy": 100 * float((pred_y == ys).mean()),
            "scene_accuracy": 100 * float((pred_place == places).mean()),
            "class_group_accuracy": [100 * float(a) for a in accs],
            "class_worst_group": 100 * float(np.min(accs)), "species_accuracy": per_species, "n": n,
            "rendition_accuracy": rendition_check(model, tokenizer, n // 4, image_size, seed)}


@torch.no_grad()
def rendition_check(model, tokenizer, n: int, image_size: int, seed: int) -> dict:
    """16-class zero-shot accuracy on n fresh images of each of the source task's rendition sets
    (RENDITION_SETS: drawn as synth_sketch and synth_rendition are, from another random stream)."""
    params = with_defaults({"image_size": image_size})
    w = zeroshot_weights(model, tokenizer, list(SOURCE_CLASSNAMES), ["a photo of a {}.", "This is a picture of a {}."], "cpu")
    out = {}
    for k, (name, plan) in enumerate(RENDITION_SETS.items()):
        rng = np.random.default_rng([seed, 11, k])
        draws = plan(n, params, rng)
        images = np.stack([render_sample(SPECIES_BY_NAME[SOURCE_CLASSNAMES[y]], look, image_size, rng)
                           for y, look, _ in draws])
        pred = (F.normalize(model.encode_image(to_tensor(images)), dim=-1) @ w.T).argmax(1).numpy()
        out[name] = 100 * float((pred == np.array([y for y, _, _ in draws])).mean())
    return out
