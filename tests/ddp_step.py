"""One training step's loss and gradients, in float64, in one process or in each of several under torchrun.

    python tests/ddp_step.py --dataset-config JSON --embeddings PATH --out FILE
    torchrun --standalone --nproc_per_node 2 tests/ddp_step.py ...

Every process runs the real step of stages.finetune.step (Student under DistributedDataParallel,
the losses on the gathered global batch) on its slice of one fixed global batch, then backward.
Rank 0 writes, per method, the loss, the regulariser and the gradient of every trainable
parameter (after DDP's all-reduce). Used by tests/test_finetune.py: the gradient must not depend on
the number of processes.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
from pathlib import Path

import torch
from torch.utils.data import default_collate

from stages import datasets
from stages.method.teacher_text import read_embeddings
from stages.finetune import distributed
from stages.finetune.runs import RunConfig, run_config
from stages.method.registry import METHODS
from stages.finetune.captions import Captions, zeroshot_class_weights
from stages.finetune.step import Student, TeacherImages, compute_loss, prepare_batch, set_trainable
from stages.finetune.trainset import SeededCropTransform, TrainSet
from stages.method.models import can_trim_text, load_clip
from stages.method.zeroshot import LinearHead

METHODS_CHECKED = ("starft", "flyp_kl", "starft_ce")
BATCH = 8


def step(cfg: dict, emb_path: str, name: str, ctx: distributed.Context) -> dict:
    torch.manual_seed(0)
    method = METHODS[name]
    run = RunConfig.from_dict(run_config(cfg["finetune"], name))
    clip = load_clip(cfg["model"]["name"])
    teacher = clip.model.double().eval().requires_grad_(False)
    tau0 = float(teacher.logit_scale.exp())
    emb = read_embeddings(emb_path)
    captions = Captions.build(emb, clip.tokenizer, cfg["classnames"], run, emb_path, True)
    captions.trim = can_trim_text(teacher)
    student_clip = copy.deepcopy(teacher).train()
    with torch.no_grad():   # a student away from its teacher: the regulariser and its gradient are not 0
        g = torch.Generator().manual_seed(1)
        for p in student_clip.parameters():
            p.add_(1e-2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    head = None
    if method.has_head:
        zs = zeroshot_class_weights(emb, cfg["evaluate"]["templates"], len(cfg["classnames"]), emb_path)
        head = LinearHead(zs, tau0).double()
    set_trainable(student_clip, method, run.kl_scale)
    student = Student(student_clip, head)

    # The same global batch of augmented images and drawn captions in every process; rank r
    # takes the r-th slice, as EpochSampler's batches are split between ranks.
    images = datasets.open("waterbirds", cfg["data"]["root"], "train").dataset
    trainset = TrainSet(images, SeededCropTransform(teacher, (0.5, 1.0)), 0, captions.spurious_rows,
                        captions.spurious_groups)
    per_rank = BATCH // ctx.world_size
    keys = [(0, i) for i in range(ctx.rank * per_rank, (ctx.rank + 1) * per_rank)]
    raw = default_collate([trainset[k] for k in keys])
    batch = prepare_batch(raw, captions, method, ctx.device)
    batch.images = batch.images.double()

    model = distributed.wrap(ctx, student)
    loss, loss_ft, reg, _, _ = compute_loss(model, TeacherImages(teacher, len(images), cache=False),
                                            emb.embeddings.double(), tau0, method, batch, 0.5, ctx,
                                            contextlib.nullcontext, run.kl_scale)
    loss.backward()
    # The gathered losses are the global batch's on every rank; cross-entropy is each rank's own
    # half, whose mean over the ranks is the global batch's (DDP averages its gradients likewise).
    return {"loss": distributed.mean(ctx, loss.detach()), "regularizer": reg.detach(),
            "grads": {n: p.grad.detach().clone() for n, p in student.named_parameters() if p.requires_grad}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset-config", required=True)
    p.add_argument("--embeddings", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    ctx = distributed.setup("cpu")
    try:
        results = {name: step(json.loads(a.dataset_config), a.embeddings, name, ctx) for name in METHODS_CHECKED}
        if ctx.is_main:
            torch.save(results, Path(a.out))
    finally:
        distributed.teardown(ctx)


if __name__ == "__main__":
    main()
