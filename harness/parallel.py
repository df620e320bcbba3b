"""Data parallelism through accelerate: each process scores a slice of the items; rank 0 writes.

Under `accelerate launch --multi_gpu --num_processes N -m harness run ...` (or torchrun; on a
machine without GPUs the processes talk over gloo) the items of every task are split
round-robin, the rows gathered to rank 0 and re-sorted, so the stored records equal one process's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

    rank: int
    """Index of this process."""
    size: int
    """Number of processes."""

    @property
    def is_main(self) -> bool:
        """True on the process that writes results."""
        return self.rank == 0


def world() -> World:
    """The current world: a single process unless launched by accelerate/torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World(0, 1)
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo between CPU processes
    return World(state.process_index, state.num_processes)


def gather_rows(rows: list, w: World) -> list:
    """All processes' rows on every process (a no-op for one process)."""
    if w.size == 1:
        return rows
    from accelerate.utils import gather_object

    return list(gather_object(rows))
