"""Fine-tune stage: one run = (dataset, method, seed, hyper-parameters) -> checkpoint + log.

- `methods`: the method table and the resolution of a run's configuration (no torch import, so
  the Snakefile can use it while building the DAG);
- `trainset`: the training set with per-sample seeded augmentation and spurious-caption draws;
- `probe`: the linear probe (L-BFGS logistic regression on cached features, L2 chosen on val);
- `distributed`: single process / torchrun (DistributedDataParallel) set-up and feature gathering;
- `train`: the run: set-up, training loop, checkpoint selection, checkpoints and resume;
- `__main__`: the command line, `python -m stages.finetune`.
"""
