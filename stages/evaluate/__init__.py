"""Evaluate stage: one run (the zero-shot teacher or a fine-tuned checkpoint) on the targets it is
given (its experiment's, or those a report shows)."""
