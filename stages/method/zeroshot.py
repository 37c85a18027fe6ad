"""Zero-shot heads from class prompts, and image/text feature extraction."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .models import autocast
from ..common.progress import progress


def class_prompts(classnames: list[str], templates: list[str]) -> list[list[str]]:
    """prompts[c][t] = templates[t] filled with classnames[c]."""
    return [[t.format(c) for t in templates] for c in classnames]


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], device, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text features [N, D]."""
    feats = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[i:i + batch_size]).to(device)
        feats.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    return torch.cat(feats)


@torch.no_grad()
def zeroshot_weights(model, tokenizer, classnames: list[str], templates: list[str], device) -> torch.Tensor:
    """Class embeddings [C, D]: the normalised mean of each class's normalised prompt embeddings."""
    prompts = class_prompts(classnames, templates)
    flat = encode_texts(model, tokenizer, [p for ps in prompts for p in ps], device)
    return ensemble_prompts(flat.view(len(classnames), len(templates), -1))


def ensemble_prompts(features: torch.Tensor) -> torch.Tensor:
    """Class embeddings [C, D] from normalised prompt features [C, T, D]: CLIP's prompt ensemble,
    the normalised mean over the T templates."""
    return F.normalize(features.mean(dim=1), dim=-1)


@torch.no_grad()
def encode_images(model, loader, device, desc: str = "encode images", autocast_dtype=None):
    """Normalised image features with their labels: (features [N, D], y [N], place [N])."""
    feats, ys, places = [], [], []
    for images, y, place, _ in progress(loader, desc=desc, leave=False):
        with autocast(device, autocast_dtype):
            f = model.encode_image(images.to(device, non_blocking=True))
        feats.append(F.normalize(f.float(), dim=-1).cpu())
        ys.append(torch.as_tensor(y))
        places.append(torch.as_tensor(place))
    return torch.cat(feats), torch.cat(ys), torch.cat(places)


class LinearHead(torch.nn.Module):
    """Linear classifier on normalised image features, initialised from the zero-shot head.

    logits = scale * <normalize(f(x)), w_c> + b_c; at initialisation it predicts exactly what the
    zero-shot classifier predicts, which is what LP-FT and FT's zero-shot initialisation need.
    """

    def __init__(self, class_weights: torch.Tensor, scale: float):
        super().__init__()
        self.linear = torch.nn.Linear(class_weights.shape[1], class_weights.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(class_weights * scale)
            self.linear.bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(F.normalize(features, dim=-1))
