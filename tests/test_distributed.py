"""The process group as the library sees it: `(world size, rank)`, `(1, 0)` without one."""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from katdensity._distributed import group_initialised, process_group


def test_without_a_group_the_process_is_alone() -> None:
    assert not group_initialised()
    assert process_group() == (1, 0)


def test_inside_a_group_of_one(tmp_path: Path) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1
    )
    try:
        assert group_initialised()
        assert process_group() == (1, 0)
    finally:
        dist.destroy_process_group()
    assert process_group() == (1, 0)
