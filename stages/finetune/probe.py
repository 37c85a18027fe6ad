"""The linear probe of lp and LP-FT: logistic regression on frozen image features, fitted to convergence.

As in WiSE-FT and LP-FT, the probe is an L2-regularised multinomial logistic regression on cached,
un-augmented, L2-normalised image features, solved to convergence (here full-batch L-BFGS with a
strong-Wolfe line search, in float64), once per L2 strength of a grid; the strength with the best
accuracy on a held-out slice of the *training* split is kept (`holdout_split`: a fixed-seed,
class-stratified 2%; the evaluation splits, ImageNet's val among them, are never looked at). For
l2 > 0 the objective is strictly convex up to a common shift of the biases (which softmax
ignores), so the classifier found does not depend on the start; starting from the zero-shot head
only shortens the solve.

    objective(W, b) = mean_i CE(W f_i + b, y_i) + l2 / 2 * ||W||^2      (the bias is not penalised)

Memory is bounded by the features, not by the logits: the objective and its gradient (written
out: dCE/dlogits = softmax - onehot) are summed over chunks of rows, each chunk's logits in
float64 at most `CHUNK_BYTES`; the features stay in their compact storage (float16) and are
widened one chunk at a time. At ImageNet's size (1,281,167 x 512 features, 1,000 classes): the
features 1.31 GB (float16), the labels 10 MB (int64), a chunk 256 MiB, L-BFGS's history
(20 pairs of 513,000 float64) 164 MB; no N x C tensor is ever held.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MAX_ITER = 2000
TOLERANCE = 1e-6   # on the largest gradient entry; float64 resolves it with room to spare
CHUNK_BYTES = 256 << 20   # float64 working memory of one chunk of rows (logits, softmax, features)
HOLDOUT_FRACTION = 0.02   # of each class's training images, held out to choose the L2 strength
HOLDOUT_SEED = 0          # fixed: every seed of lp and LP-FT shares the probe, hence the slice


@dataclass
class ProbeFit:
    """One L2 strength's solution: the head [C, D] and [C] (float64), how well it was solved, and its
    hold-out accuracy."""
    l2: float
    weight: torch.Tensor     # [C, D] float64
    bias: torch.Tensor       # [C] float64
    objective: float
    cross_entropy: float
    grad_max: float          # largest |gradient entry| of the objective at the solution
    iterations: int
    holdout_accuracy: float  # on the held-out slice of the training split

    @property
    def converged(self) -> bool:
        """Whether the largest gradient entry is within 10 x TOLERANCE."""
        return self.grad_max <= 10 * TOLERANCE

    def record(self) -> dict:
        """The fit's numbers for the probe record (no weights)."""
        return {"l2": self.l2, "objective": self.objective, "cross_entropy": self.cross_entropy,
                "grad_max": self.grad_max, "iterations": self.iterations, "converged": self.converged,
                "holdout_accuracy": self.holdout_accuracy}


def holdout_split(labels, fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices) of a training split, both sorted and disjoint.

    Per class c with n_c images, round(fraction * n_c) of them (at least 1, and never all: a class
    with one image keeps it for the fit) drawn by a generator seeded by (seed, c): the slice is a
    function of the labels and the seed only, and a class's draw does not depend on the others.
    """
    labels = np.asarray(labels, dtype=np.int64)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(len(members) - 1, max(1, round(fraction * len(members))))
        if k > 0:
            held.append(np.random.default_rng([seed, int(c)]).choice(members, size=k, replace=False))
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held


def indices_hash(indices) -> str:
    """sha256 of the indices as little-endian int64: names the slice in the probe's record."""
    return hashlib.sha256(np.asarray(indices, dtype="<i8").tobytes()).hexdigest()


def chunk_rows(n_classes: int, dim: int, budget: int = CHUNK_BYTES) -> int:
    """Rows per chunk so that a chunk's float64 logits, softmax and features fit in `budget` bytes."""
    return max(1, budget // (8 * (2 * n_classes + dim)))


def objective(weight, bias, feats, y, l2: float):
    """(regularised objective, its cross-entropy part), through autograd on all rows at once: the
    reference that `objective_and_grad` is tested against."""
    ce = F.cross_entropy(feats @ weight.T + bias, y)
    return ce + 0.5 * l2 * weight.pow(2).sum(), ce


@torch.no_grad()
def objective_and_grad(weight, bias, feats, y, l2: float, chunk: int | None = None):
    """(objective, cross-entropy, dObjective/dW, dObjective/db), summed over chunks of `chunk` rows
    (default: `chunk_rows`) in the weights' dtype; `feats` may be stored narrower (float16)."""
    n = len(y)
    chunk = chunk or chunk_rows(weight.shape[0], weight.shape[1])
    ce_sum = torch.zeros((), dtype=weight.dtype, device=weight.device)
    grad_w, grad_b = torch.zeros_like(weight), torch.zeros_like(bias)
    for start in range(0, n, chunk):
        f = feats[start:start + chunk].to(weight.dtype)
        target = y[start:start + chunk]
        logits = torch.addmm(bias, f, weight.T)
        lse = torch.logsumexp(logits, dim=1)
        ce_sum += (lse - logits.gather(1, target[:, None]).squeeze(1)).sum()
        p = logits.sub_(lse[:, None]).exp_()              # softmax, in the logits' memory
        p[torch.arange(len(target), device=p.device), target] -= 1
        grad_w.addmm_(p.T, f)
        grad_b += p.sum(0)
    ce = ce_sum / n
    grad_w.div_(n).add_(weight, alpha=l2)
    grad_b.div_(n)
    return ce + 0.5 * l2 * weight.pow(2).sum(), ce, grad_w, grad_b


@torch.no_grad()
def accuracy(weight, bias, feats, y, chunk: int | None = None) -> float:
    """Top-1 accuracy (%) of the probe on (feats, y), chunked as the objective."""
    if len(y) == 0:
        return float("nan")
    chunk = chunk or chunk_rows(weight.shape[0], weight.shape[1])
    correct = 0
    for start in range(0, len(y), chunk):
        logits = torch.addmm(bias, feats[start:start + chunk].to(weight.dtype), weight.T)
        correct += int((logits.argmax(1) == y[start:start + chunk]).sum())
    return 100.0 * correct / len(y)


def fit_logistic(feats: torch.Tensor, y: torch.Tensor, weight0: torch.Tensor, bias0: torch.Tensor, l2: float,
                 max_iter: int = MAX_ITER, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Minimise `objective` from (weight0, bias0) with L-BFGS in float64 on feats' device; return
    (weight, bias, diagnostics). `feats` stays in its dtype (float16 storage is widened per chunk)."""
    device = feats.device
    weight = weight0.detach().to(device, torch.float64).clone().requires_grad_(True)
    bias = bias0.detach().to(device, torch.float64).clone().requires_grad_(True)
    y = y.to(device)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, max_eval=2 * max_iter,
                            tolerance_grad=TOLERANCE, tolerance_change=1e-15, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        loss, _, weight.grad, bias.grad = objective_and_grad(weight.detach(), bias.detach(), feats, y, l2, chunk)
        return loss

    opt.step(closure)
    loss, ce, gw, gb = objective_and_grad(weight.detach(), bias.detach(), feats, y, l2, chunk)
    info = {"objective": float(loss), "cross_entropy": float(ce),
            "grad_max": max(float(gw.abs().max()), float(gb.abs().max())),
            "iterations": int(opt.state[weight]["n_iter"])}
    return weight.detach(), bias.detach(), info


def fit_probe(fit_feats, fit_y, holdout_feats, holdout_y, weight0, bias0, l2_grid,
              chunk: int | None = None) -> tuple[ProbeFit, list[ProbeFit]]:
    """One fit on (fit_feats, fit_y) per L2 strength; the chosen one has the best accuracy on the
    held-out slice of the training split (ties: the stronger L2)."""
    if len(holdout_y) == 0:
        raise ValueError("the linear probe chooses its L2 strength on held-out training images, and none "
                         "could be held out (every class has a single training image)")
    holdout_y = holdout_y.to(holdout_feats.device)
    fits = []
    for l2 in sorted(set(l2_grid)):
        weight, bias, info = fit_logistic(fit_feats, fit_y, weight0, bias0, l2, chunk=chunk)
        acc = accuracy(weight, bias, holdout_feats, holdout_y, chunk)
        fits.append(ProbeFit(l2, weight, bias, holdout_accuracy=acc, **info))
    best = max(fits, key=lambda f: (f.holdout_accuracy, f.l2))
    return best, fits
