"""The shared memory a data loader will need, checked against what /dev/shm offers before it starts.

A DataLoader's workers hand each batch to the training process through shared memory (/dev/shm
on Linux). PyTorch keeps at most `num_workers x prefetch_factor` batches in flight, and the
training process holds one more (the batch it is using; with pinned memory, the one the pinning
thread is copying), so at most

    needed = processes x (num_workers x prefetch_factor + 1) x batch_bytes

are mapped at once, with batch_bytes = per-process batch x bytes of one sample (uint8 pixels
3 x H x W plus its labels) and processes = the training processes of this machine (torchrun's
LOCAL_WORLD_SIZE), which share its /dev/shm. A container's /dev/shm is often 64 MB (docker's default): a loader
that needs more dies mid-epoch with a bus error. `check_loader_memory` turns that into one line
naming both numbers and the fix, before the first batch.
"""

from __future__ import annotations

import math
import os

from .runs import FinetuneConfigError

SHM_PATH = "/dev/shm"
GIB = 1 << 30
# Here rather than beside the loaders (setup) so that the resource plan (stages.plan) can size a
# job's memory by the same numbers without importing torch.
PREFETCH = 2        # batches each loader worker prepares ahead (check_loader_memory counts them)
LABEL_BYTES = 40    # a sample's int64 fields beside its pixels (label, index, caption row, ...), at most 5


class SharedMemoryError(FinetuneConfigError):
    """The loader would need more shared memory than /dev/shm offers."""


def available_bytes(path: str = SHM_PATH) -> int | None:
    """Free bytes of the file system at `path` (os.statvfs), or None where there is none (not Linux)."""
    try:
        st = os.statvfs(path)
    except (FileNotFoundError, NotADirectoryError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def loader_bytes(workers: int, prefetch: int, batch_bytes: int, processes: int = 1) -> int:
    """The module's formula: processes x (workers x prefetch + 1) batches; 0 without workers (the
    training process loads its own batches: no shared memory)."""
    return 0 if workers == 0 else processes * (workers * prefetch + 1) * batch_bytes


def _size(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / (1 << 20):.1f} MiB"


def check_loader_memory(what: str, workers: int, prefetch: int, batch: int, sample_bytes: int,
                        processes: int | None = None, path: str | None = None, available: int | None = None) -> int:
    """Raise SharedMemoryError (one line) if the loaders of `what` need more shared memory than
    `path` (default SHM_PATH) offers; `available` overrides the measured free bytes (tests), and
    `processes` defaults to torchrun's LOCAL_WORLD_SIZE. Returns the need in bytes."""
    processes = processes or int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    need = loader_bytes(workers, prefetch, batch * sample_bytes, processes)
    path = path or SHM_PATH
    have = available if available is not None else available_bytes(path)
    if need == 0 or have is None or need <= have:
        return need
    fits = max(0, (have // (processes * batch * sample_bytes) - 1) // prefetch)
    procs = f"{processes} processes x " if processes > 1 else ""
    fix = f"set finetune.num_workers to {fits} or fewer" if fits else "set finetune.num_workers: 0"
    raise SharedMemoryError(
        f"{what}: the data loader needs {_size(need)} of shared memory ({procs}(num_workers {workers} x prefetch "
        f"{prefetch} + 1) x batch {batch} x {sample_bytes:,} bytes) but {path} offers {_size(have)}: {fix}, "
        f"or give the container more shared memory (docker run --shm-size={math.ceil(need / GIB)}g)")
