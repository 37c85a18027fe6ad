"""Fine-tune stage: one run = (dataset, method, seed, hyper-parameters) -> checkpoint + log.

- `runs`: a run's configuration, its method or variant resolved and its hyper-parameters checked
  (no torch import, so the Snakefile can use it while building the DAG);
- `trainset`: the training set with per-sample seeded augmentation and spurious-caption draws,
  uint8 pixels from the workers and their normalisation on the device;
- `decode`: the same training images decoded and cropped on the device (`decode: device`);
- `probe`: the linear probe (L-BFGS logistic regression on cached features, chunked; L2 chosen on
  a held-out slice of the training split);
- `probe_config`: which probe a run reads (the keys that determine it, its file; no torch);
- `shm`: the shared memory a data loader needs, checked against /dev/shm before it starts;
- `distributed`: single process / torchrun (DistributedDataParallel) set-up and feature gathering;
- `captions`: what a run reads from the teacher's text table (caption and spurious rows, the
  zero-shot head, the inputs' fingerprint);
- `step`: the loss of one batch (student, teacher image features, FLYP/CE plus the regulariser);
- `setup`: the run's set-up that every other piece reads (`Run`, `prepare`, the data loaders);
- `selection`: checkpoint selection on val (`finetune.select`), the val metrics after an epoch;
- `tracking`: live tracking (`finetune.track`): log rows and val metrics to TensorBoard, W&B, MLflow;
- `checkpoint`: checkpoints and resume (atomic writes, resume.pt, the final checkpoint and log);
- `linear_probe`: the linear probe's driver (features once, fit, the probe file, the run's head);
- `probe_cli`: the command line of the `probe` rule, one probe for every seed of lp and lpft;
- `loop`: the training loop (epochs, steps, live tracking, the non-finite loss stop);
- `train`: the run's entry, `train` (set-up, resume, probe, fine-tuning);
- `__main__`: the command line, `python -m stages.finetune`.
"""
