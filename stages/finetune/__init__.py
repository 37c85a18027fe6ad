"""Fine-tune stage: one run = (dataset, method, seed, hyper-parameters) -> checkpoint + log.

- `methods`: the method table and the resolution of a run's configuration (no torch import, so
  the Snakefile can use it while building the DAG);
- `data`: the training set with per-sample seeded augmentation and spurious-caption draws;
- `distributed`: single process / torchrun (DistributedDataParallel) set-up and feature gathering;
- `train`: the training loop, checkpoints, resume and the linear probe;
- `__main__`: the command line, `python -m stages.finetune`.
"""
