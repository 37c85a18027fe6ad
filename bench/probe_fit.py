"""Memory and time of one evaluation of the linear probe's objective and gradient: the chunked one
(stages.finetune.probe.objective_and_grad, float16 features widened a chunk at a time) against
the former full-batch autograd one (float64 features, N x C logits and their graph).

    python bench/probe_fit.py                       # N 20,000, D 512, C 1,000
    python bench/probe_fit.py --n 50000 --classes 1000 --device cuda

Each variant runs in a fresh process; peak memory is the process's peak resident set (CPU) or
torch's peak allocation (CUDA), less what the process held before the call (the features). It
is one evaluation: a fit makes up to 2 x 2,000 of them per L2 strength.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(variant: str, n: int, d: int, c: int, device: str) -> dict:
    import torch

    from stages.finetune import probe

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1).half().to(device)
    y = torch.randint(0, c, (n,), generator=g).to(device)
    w = torch.randn(c, d, dtype=torch.float64, device=device) * 0.1
    b = torch.zeros(c, dtype=torch.float64, device=device)
    if variant == "full":
        feats = feats.double()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    if variant == "full":
        w.requires_grad_(True)
        b.requires_grad_(True)
        loss = probe.objective(w, b, feats, y, 1e-4)[0]
        torch.autograd.grad(loss, [w, b])
    else:
        probe.objective_and_grad(w, b, feats, y, 1e-4)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"variant": variant, "seconds": time.perf_counter() - t, "peak_bytes": peak,
            "features_bytes": feats.numel() * feats.element_size()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one, a.n, a.dim, a.classes, a.device)))
        return
    print(f"N {a.n:,} x D {a.dim} features, C {a.classes} classes, {a.device}; one objective + gradient")
    print("| variant | features held | peak beyond them | seconds |")
    print("|---|---:|---:|---:|")
    for variant in ("chunked", "full"):
        out = subprocess.run([sys.executable, __file__, "--one", variant, "--n", str(a.n), "--dim", str(a.dim),
                              "--classes", str(a.classes), "--device", a.device],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {variant} | {r['features_bytes'] / 2**20:.0f} MiB | {r['peak_bytes'] / 2**20:.0f} MiB | "
              f"{r['seconds']:.2f} |")
    n_full = 1_281_167
    print(f"\nat ImageNet's size ({n_full:,} x 512, 1,000 classes): features {n_full * 512 * 2 / 1e9:.2f} GB "
          f"float16 (chunked) vs {n_full * 512 * 8 / 1e9:.2f} GB float64 plus {n_full * 1000 * 8 / 1e9:.1f} GB of "
          f"logits per autograd buffer (full)")


if __name__ == "__main__":
    main()
