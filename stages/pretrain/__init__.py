"""Pretrain stage: the synthetic world's tiny CLIP, pre-trained contrastively and saved as an open_clip `local-dir:` model."""
