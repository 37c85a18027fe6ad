"""The linear probe of lp and LP-FT: logistic regression on frozen image features, fitted to convergence.

As in WiSE-FT and LP-FT, the probe is an L2-regularised multinomial logistic regression on cached,
un-augmented, L2-normalised image features, solved to convergence (here full-batch L-BFGS with a
strong-Wolfe line search, in float64), once per L2 strength of a grid; the strength with the best
val accuracy is kept. For l2 > 0 the objective is strictly convex up to a common shift of the
biases (which softmax ignores), so the classifier found does not depend on the start; starting
from the zero-shot head only shortens the solve.

    objective(W, b) = mean_i CE(W f_i + b, y_i) + l2 / 2 * ||W||^2      (the bias is not penalised)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_ITER = 2000
TOLERANCE = 1e-6   # on the largest gradient entry; float64 resolves it with room to spare


@dataclass
class ProbeFit:
    l2: float
    weight: torch.Tensor     # [C, D] float64
    bias: torch.Tensor       # [C] float64
    objective: float
    cross_entropy: float
    grad_max: float          # largest |gradient entry| of the objective at the solution
    iterations: int
    val_accuracy: float

    @property
    def converged(self) -> bool:
        return self.grad_max <= 10 * TOLERANCE

    def record(self) -> dict:
        return {"l2": self.l2, "objective": self.objective, "cross_entropy": self.cross_entropy,
                "grad_max": self.grad_max, "iterations": self.iterations, "converged": self.converged,
                "val_accuracy": self.val_accuracy}


def objective(weight, bias, feats, y, l2: float):
    """(regularised objective, its cross-entropy part)."""
    ce = F.cross_entropy(feats @ weight.T + bias, y)
    return ce + 0.5 * l2 * weight.pow(2).sum(), ce


def fit_logistic(feats: torch.Tensor, y: torch.Tensor, weight0: torch.Tensor, bias0: torch.Tensor, l2: float,
                 max_iter: int = MAX_ITER) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Minimise `objective` from (weight0, bias0) with L-BFGS; return (weight, bias, diagnostics)."""
    feats = feats.double()
    weight = weight0.detach().double().clone().requires_grad_(True)
    bias = bias0.detach().double().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, max_eval=2 * max_iter,
                            tolerance_grad=TOLERANCE, tolerance_change=1e-15, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective(weight, bias, feats, y, l2)[0]
        loss.backward()
        return loss

    opt.step(closure)
    loss, ce = objective(weight, bias, feats, y, l2)
    grads = torch.autograd.grad(loss, [weight, bias])
    info = {"objective": float(loss.detach()), "cross_entropy": float(ce.detach()),
            "grad_max": max(float(g.abs().max()) for g in grads),
            "iterations": int(opt.state[weight]["n_iter"])}
    return weight.detach(), bias.detach(), info


def fit_probe(train_feats, train_y, val_feats, val_y, weight0, bias0, l2_grid) -> tuple[ProbeFit, list[ProbeFit]]:
    """One fit per L2 strength; the chosen one has the best val accuracy (ties: the stronger L2)."""
    if len(val_y) == 0:
        raise ValueError("the linear probe chooses its L2 strength on the val split, which is empty")
    val_feats = val_feats.double()
    fits = []
    for l2 in sorted(set(l2_grid)):
        weight, bias, info = fit_logistic(train_feats, train_y, weight0, bias0, l2)
        acc = float(((val_feats @ weight.T + bias).argmax(1) == val_y).double().mean()) * 100
        fits.append(ProbeFit(l2, weight, bias, val_accuracy=acc, **info))
    best = max(fits, key=lambda f: (f.val_accuracy, f.l2))
    return best, fits
