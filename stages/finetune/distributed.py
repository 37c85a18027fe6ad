"""One process, or several under torchrun (DistributedDataParallel, one device per process).

Under torchrun each rank holds B / W samples of the global batch B. The losses are computed on
the gathered global batch (contrastive negatives and StarFT's other-class captions come from all
B samples, as on one device); `gather` keeps the gradient, and since every rank computes the same
global loss, the all-gather backward (a sum over ranks) followed by DDP's gradient average gives
exactly the one-device gradient.
"""

from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..method.models import resolve_device


@dataclass
class Context:
    """This process's place: its rank among `world_size` processes and its device."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes files and evaluates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether the run has several processes (torchrun)."""
        return self.world_size > 1


def setup(device: str = "auto") -> Context:
    """Join the torchrun process group if there is one; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device)
    if world_size == 1:
        return Context(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return Context(rank, world_size, local_rank, device)


def wrap(ctx: Context, module: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel under torchrun, the module itself otherwise."""
    if not ctx.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP
    # The only buffers (attention masks) are constants: no need to broadcast them every step.
    quiet = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
             else {"broadcast_buffers": False})
    return DDP(module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
               gradient_as_bucket_view=True, **quiet)


def teardown(ctx: Context) -> None:
    """Leave the process group, if this run joined one."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


class _AllGather(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every rank's (identical) loss.

    all_reduce + slice rather than reduce_scatter, which gloo lacks; the tensor is B x D.
    """

    @staticmethod
    def forward(fn_ctx, x, rank: int, world_size: int):
        """Every rank's `x` concatenated in rank order [world_size * n, ...]."""
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        fn_ctx.rank, fn_ctx.n = rank, len(x)
        return torch.cat(parts)

    @staticmethod
    def backward(fn_ctx, grad):
        """This rank's rows of the gradient summed over ranks."""
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[fn_ctx.rank * fn_ctx.n:(fn_ctx.rank + 1) * fn_ctx.n], None, None


def gather(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` over ranks (rank order; equal sizes), differentiably when x requires grad."""
    if not ctx.distributed:
        return x
    if x.requires_grad:
        return _AllGather.apply(x, ctx.rank, ctx.world_size)
    parts = [torch.empty_like(x) for _ in range(ctx.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def mean(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    """The mean of `x` over ranks (for logging per-rank losses)."""
    if not ctx.distributed:
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / ctx.world_size


def any_rank(ctx: Context, flag: bool) -> bool:
    """True on every rank if `flag` is true on one (so that all ranks stop together)."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([float(flag)], device=ctx.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def barrier(ctx: Context) -> None:
    """Wait for every rank (a no-op in one process)."""
    if ctx.distributed:
        dist.barrier()
