"""The synthetic world's CPU speed-ups, each measured side by side with what it replaced.

    python bench/cpu_speedups.py               # about a minute on one core
    python bench/cpu_speedups.py --steps 40 --epochs 4

1. A pre-training step of the tiny CLIP (stages.synthetic.teacher's model, stages.pretrain.run's
   loss, batch 128, one thread): AdamW fused (`fused=True`, as stages.pretrain.run and
   stages.finetune use it on the CPU) against torch's default for-loop AdamW. The steps alternate
   between the two, so that a machine slowing down or speeding up affects both alike.
2. A fine-tuning run's image loading: TrainSet items (seeded RandomResizedCrop + normalisation)
   of SynthBirds' 32 px training JPEGs over several epochs, decoding every image every epoch
   against once per run (stages.finetune.trainset.DecodedCache, used when the loader has no
   workers).

Ratios, not absolute times, are the result: the machine may be shared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch

from stages import datasets
from stages.finetune.trainset import DecodedCache, SeededCropTransform, TrainSet
from stages.method.models import load_clip, save_local_dir
from stages.synthetic.teacher import CONTEXT_LENGTH, tiny_clip_config, to_tensor
from stages.synthetic.captions import generate_pretrain_set
from stages.synthetic.world import generate_dataset

TEACHER = {"embed_dim": 64, "layers": 4, "width": 96, "patch_size": 8, "text_layers": 2}  # config/synthbirds.yaml


def optimizer_steps(folder: Path, steps: int, batch: int) -> dict[str, float]:
    """Median seconds per pre-training step with each AdamW, the two interleaved."""
    path = folder / "pretrain_set.npz"
    generate_pretrain_set(path, 4 * batch, correlation=0.7, world="all")
    data = np.load(path)
    images = to_tensor(data["images"])
    tokens = open_clip.SimpleTokenizer(context_length=CONTEXT_LENGTH)(list(data["captions"]))
    loss_fn = open_clip.ClipLoss()
    runs = {}
    for name, fused in (("for-loop", None), ("fused", True)):
        torch.manual_seed(0)
        model = open_clip.CLIP(**tiny_clip_config(TEACHER, 32))
        runs[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), fused=fused))
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for step in range(steps + 3):
        idx = torch.from_numpy(rng.choice(len(images), batch, replace=False))
        for name, (model, opt) in runs.items():
            start = time.perf_counter()
            loss = loss_fn(*model(images[idx], tokens[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= 3:  # the first steps allocate the optimizer state
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def loading_epochs(folder: Path, epochs: int) -> dict[str, float]:
    """Seconds to load every training item for `epochs` epochs, decoding each epoch or once."""
    root = folder / "synthbirds"
    generate_dataset(root, n_train=2000, n_val=8, n_test=8, train_correlation=0.95)
    model_cfg = tiny_clip_config(TEACHER, 32)
    (folder / "clip").mkdir()
    save_local_dir(open_clip.CLIP(**model_cfg), model_cfg, folder / "clip")
    transform = SeededCropTransform(load_clip(f"local-dir:{folder / 'clip'}").model, (0.9, 1.0))
    images = datasets.open("waterbirds", root, "train").dataset
    out = {}
    for name, source in (("every epoch", images), ("once (DecodedCache)", DecodedCache(images))):
        items = TrainSet(source, transform, seed=0, spurious_rows=None)
        start = time.perf_counter()
        for epoch in range(epochs):
            for i in range(len(items)):
                items[(epoch, i)]
        out[name] = time.perf_counter() - start
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="measured pre-training steps per optimizer")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5, help="epochs of image loading (the demo fine-tunes 5)")
    a = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        steps = optimizer_steps(Path(tmp), a.steps, a.batch)
        print(f"pre-training step, batch {a.batch}, 1 thread (median of {a.steps}):")
        for name, t in steps.items():
            print(f"  AdamW {name:10s} {1000 * t:7.1f} ms")
        print(f"  fused / for-loop: {steps['fused'] / steps['for-loop']:.2f}")
        loading = loading_epochs(Path(tmp), a.epochs)
        print(f"loading 2000 training images x {a.epochs} epochs (decode + seeded crop), 1 thread:")
        for name, t in loading.items():
            print(f"  decoded {name:20s} {t:6.1f} s")
        print(f"  once / every epoch: {loading['once (DecodedCache)'] / loading['every epoch']:.2f}")


if __name__ == "__main__":
    main()
