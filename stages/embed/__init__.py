"""Embed stage: the frozen teacher's text embeddings of every caption fine-tuning will need."""
