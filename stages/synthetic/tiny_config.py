"""The tiny CLIP's architecture as an open_clip model_cfg, without torch: the pretrain stage builds
it, the resource plan (stages.plan) counts its parameters while Snakemake builds the DAG."""

from __future__ import annotations

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
