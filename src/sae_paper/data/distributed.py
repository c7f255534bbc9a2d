"""Rank and world under ``torchrun``: who this process is, the rendezvous, a barrier; no scheduler.

``torchrun --nproc_per_node N [--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT] -m sae_paper ...``
starts the ranks and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address;
:func:`world` reads them (a plain process is rank 0 of 1). :func:`process_group` joins the
ranks with torch.distributed's gloo backend, which runs on the CPU and over TCP, so the
same launch works on a laptop, a GPU box (each rank's tensors on ``cuda:LOCAL_RANK``, see
:mod:`sae_paper.data.device`) and several machines. The ranks only meet at barriers and
exchange small Python objects; every result goes through the shared disk cache, written
under its ``flock`` (:func:`sae_paper.data.cache.locked`), so the cache folder must be on a
filesystem every rank sees, with working ``flock`` (docs/distributed.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sae_paper.errors import SaePaperError

T = TypeVar("T")

TIMEOUT_ENV = "SAE_PAPER_DIST_TIMEOUT"
"""Seconds a rank waits at a barrier for the others (default 1800): a rank that died is then an error, not a hang."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one launch."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def mine(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``size``-th one from its rank on (round-robin)."""
        return list(items[self.rank :: self.size])


def world() -> World:
    """This process's rank, world size and local rank, from torchrun's environment (rank 0 of 1 without it)."""
    try:
        found = World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                      int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise SaePaperError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
    if not 0 <= found.rank < found.size:
        raise SaePaperError(f"RANK={found.rank} is outside WORLD_SIZE={found.size}")
    return found


@contextmanager
def process_group() -> Iterator[World]:
    """Join this launch's ranks (gloo) for the block, when there are several; a plain process just gets its World."""
    here = world()
    if not here.distributed:
        yield here
        return
    import torch.distributed as dist

    if dist.is_initialized():  # an enclosing block joined already
        yield here
        return
    seconds = float(os.environ.get(TIMEOUT_ENV, "1800"))
    dist.init_process_group("gloo", rank=here.rank, world_size=here.size, timeout=timedelta(seconds=seconds))
    try:
        yield here
    finally:
        dist.destroy_process_group()


def barrier(what: str) -> None:
    """Wait until every rank reaches this point (nothing without a process group); ``what`` names it in the error."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except Exception as error:  # noqa: BLE001 - a rank died or timed out: one line, not a trace
            raise SaePaperError(f"rank {world().rank}: another rank did not reach '{what}' "
                                f"({type(error).__name__}); it died or timed out, see its error") from None


def broadcast(value: Any, what: str) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    try:
        dist.broadcast_object_list(box, src=0)
    except Exception as error:  # noqa: BLE001
        raise SaePaperError(f"rank {world().rank}: could not receive {what} from rank 0 ({type(error).__name__}); "
                            "it died or timed out, see its error") from None
    return box[0]
