"""One run over several processes: who this process is, and the few collectives a recipe needs.

A launcher (``torchrun``, ``accelerate launch``, or swiftkit's own re-launch under NPROC_PER_NODE, see
:mod:`swiftkit.cli.launch`) starts one process per rank and tells each its place through the environment
(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE). :func:`join` starts the process group early, before
the run folder exists, so that rank 0 alone makes it and the others learn its name; transformers'
Trainer (through accelerate) then trains on that same group. Outside a launcher every function here is
a no-op on one rank.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from swiftkit.core.errors import ConfigError, SwiftkitError

# What a run stops after when a rank stops answering (transformers' --ddp_timeout default).
DEFAULT_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run's records."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def nnodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


ONE_RANK = Ranks()  # a run in one process


def env_count(environ, name: str, default: int, least: int) -> int:
    """Whole number ``name`` of ``environ`` (``default`` when unset or empty); one line of error when it is
    not a whole number of at least ``least``."""
    value = environ.get(name, "")
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = least - 1
    if number < least:
        raise ConfigError(f"{name}={value!r} must be a whole number >= {least}")
    return number


def ranks(environ=None) -> Ranks:
    """This process's place, from the launcher's environment (one rank when there is none)."""
    environ = os.environ if environ is None else environ
    world = env_count(environ, "WORLD_SIZE", 1, 1)
    return Ranks(rank=env_count(environ, "RANK", 0, 0), world_size=world,
                 local_rank=env_count(environ, "LOCAL_RANK", 0, 0),
                 local_world_size=env_count(environ, "LOCAL_WORLD_SIZE", world, 1))


def lone_rank(environ=None) -> None:
    """Outside a launcher, make this process rank 0 of a one-rank run in the environment (a free port on
    this machine for the rendezvous): DeepSpeed and FSDP train inside a process group even on one rank."""
    environ = os.environ if environ is None else environ
    if "RANK" in environ or "LOCAL_RANK" in environ:
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))


def join(timeout_s: int = DEFAULT_TIMEOUT_S, backend: str | None = None) -> Ranks:
    """This process's place; in a distributed run, with the process group started (``backend``, or gloo
    on the CPU and nccl on CUDA GPUs). A collective that waits longer than ``timeout_s`` for a rank
    fails instead of hanging."""
    place = ranks()
    if not place.distributed:
        return place
    import torch  # defers torch
    import torch.distributed as dist  # defers torch

    if not dist.is_initialized():
        gpu = torch.cuda.is_available()
        if gpu:
            torch.cuda.set_device(place.local_rank)
        dist.init_process_group(backend or ("nccl" if gpu else "gloo"),
                                timeout=timedelta(seconds=timeout_s))
    return place


def leave() -> None:
    """The process group, closed (when one is open): a process that exits with gloo's threads still running
    can abort on its way out ("terminate called without an active exception")."""
    dist = sys.modules.get("torch.distributed")  # never started when torch was never imported
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active(place: Ranks) -> bool:
    if not place.distributed:
        return False
    import torch.distributed as dist  # defers torch

    return dist.is_initialized()


def broadcast(value, place: Ranks):
    """Rank 0's ``value`` (any picklable object), on every rank."""
    if not _active(place):
        return value
    import torch.distributed as dist  # defers torch

    box = [value if place.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gathered(value, place: Ranks) -> list:
    """``value`` of every rank, in rank order."""
    if not _active(place):
        return [value]
    import torch.distributed as dist  # defers torch

    out = [None] * place.world_size
    dist.all_gather_object(out, value)
    return out


def barrier(place: Ranks) -> None:
    if _active(place):
        import torch.distributed as dist  # defers torch

        dist.barrier()


def from_main(compute, place: Ranks):
    """``compute()`` run by rank 0 alone, its result on every rank; when it raises, every rank raises the same
    error (so no rank waits for a result that will not come)."""
    if not _active(place):
        return compute()
    outcome, error = None, None
    if place.main:
        try:
            outcome = (True, compute())
        except Exception as exc:  # handed to the other ranks, then raised here too
            error = exc
            try:
                pickle.dumps(exc)
                outcome = (False, exc)
            except Exception:  # an error that cannot travel: its message does
                outcome = (False, SwiftkitError(str(exc)))
    ok, value = broadcast(outcome, place)
    if error is not None:
        raise error
    if not ok:
        raise value
    return value


@contextmanager
def main_first(place: Ranks):
    """Rank 0 runs the block before the others do (e.g. encoding data into a cache the others read)."""
    if not place.main:
        barrier(place)
    try:
        yield
    finally:
        if place.main:
            barrier(place)
