"""The method's library: pure functions over tensors, importing nothing from the stages.

- `models`: open_clip models by name or `local-dir:`, their identity, saving, autocast;
- `losses`: FLYP's contrastive loss, the StarFT regulariser and its unmasked KL variant, lambda's schedule;
- `schedule`: the learning rate's warm-up and cosine;
- `zeroshot`: prompt ensembles, zero-shot weights, image features, the linear head;
- `metrics`: group accuracies, worst-group, average and adjusted average;
- `scoring`: a run's head, WiSE-FT's interpolation, predictions and each split's metrics;
- `registry`: the methods of the comparison (free of torch: the Snakefile reads it);
- `teacher_text`: the frozen teacher's text embeddings, the file the embed stage writes.
"""
