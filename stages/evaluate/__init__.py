"""Evaluate stage: one run (the zero-shot teacher or a fine-tuned checkpoint) on every target of its experiment."""
