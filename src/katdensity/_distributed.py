"""The `torch.distributed` process group this process belongs to, if any."""

from __future__ import annotations

import torch.distributed as dist

__all__ = ["group_initialised", "process_group"]


def group_initialised() -> bool:
    """Whether `torch.distributed` is built in and its default process group initialised."""
    return dist.is_available() and dist.is_initialized()


def process_group() -> tuple[int, int]:
    """`(world size, rank)` of the default process group; `(1, 0)` without one."""
    if not group_initialised():
        return 1, 0
    return dist.get_world_size(), dist.get_rank()
