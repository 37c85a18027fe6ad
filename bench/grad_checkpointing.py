"""Peak memory and time of one FLYP training step with and without gradient checkpointing, side by
side (docs/finetune.md, "Memory"): `python bench/grad_checkpointing.py [--model ViT-B-32 --batch 64]`.

Each mode runs in a fresh process (so that neither inherits the other's allocator pages). Memory
is the process's peak resident set during the step above its resident set just before it: Linux
resets the peak (VmHWM) when "5" is written to /proc/self/clear_refs, so the model's creation does
not count. The step is the forward and the backward (no optimizer: AdamW's two moments, allocated at
its first step, would be the peak whatever the activations); on the CPU the peak is the kept
activations plus the gradients; on a GPU the same activations are device memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def one_step(model_name: str, batch: int, checkpointing: bool, threads: int) -> dict:
    """One FLYP forward and backward (the student on images and captions, the contrastive loss)."""
    import open_clip
    import torch

    from stages.method.losses import clip_contrastive_loss

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = open_clip.create_model(model_name, pretrained=None).train()
    model.set_grad_checkpointing(checkpointing)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(batch, 3, size, size)
    tokens = open_clip.get_tokenizer(model_name)([f"a photo of a class {i}." for i in range(batch)])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")   # the peak RSS from here on
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    image, text, scale = model(images, tokens)[:3]
    loss = clip_contrastive_loss(image, text, scale)
    loss.backward()
    seconds = time.perf_counter() - t0
    return {"checkpointing": checkpointing, "peak_above_start_mib": (_status_kib("VmHWM") - before) / 1024,
            "seconds": seconds, "loss": float(loss)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(one_step(a.model, a.batch, a.child == "on", a.threads)))
        return
    rows = []
    for mode in ("off", "on"):
        out = subprocess.run([sys.executable, __file__, "--model", a.model, "--batch", str(a.batch), "--threads",
                              str(a.threads), "--child", mode], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"model {a.model} (random init), batch {a.batch}, CPU float32, {a.threads} threads, "
          "one FLYP forward + backward")
    print(f"{'grad_checkpointing':>20} {'peak above start (MiB)':>24} {'step (s)':>10} {'loss':>10}")
    for r in rows:
        print(f"{str(r['checkpointing']):>20} {r['peak_above_start_mib']:>24.0f} {r['seconds']:>10.1f} "
              f"{r['loss']:>10.5f}")
    off, on = rows
    print(f"saved: {off['peak_above_start_mib'] - on['peak_above_start_mib']:.0f} MiB "
          f"({1 - on['peak_above_start_mib'] / off['peak_above_start_mib']:.0%}), "
          f"time x {on['seconds'] / off['seconds']:.2f}")


if __name__ == "__main__":
    main()
