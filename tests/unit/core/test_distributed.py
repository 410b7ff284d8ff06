"""The collectives a recipe uses, on two real gloo processes: rank 0 computes and every rank gets the result,
or every rank gets rank 0's error instead of waiting."""

from __future__ import annotations

import os
import socket

import torch.multiprocessing as mp

from swiftkit.core import distributed
from swiftkit.core.errors import ConfigError


def _rank(rank: int, port: int, results):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    place = distributed.join(timeout_s=60)
    calls = []

    def compute():
        calls.append(rank)
        return {"rows": [1, 2, 3], "by": rank}

    value = distributed.from_main(compute, place)

    def fail():
        raise ConfigError("--dataset bad.jsonl line 3: no messages")

    try:
        distributed.from_main(fail, place)
        error = None
    except ConfigError as exc:
        error = str(exc)
    distributed.leave()
    results.put((rank, value, calls, error))


def test_from_main_runs_on_rank_zero_and_shares_its_result_or_its_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(rank, port, results)) for rank in range(2)]
    for proc in procs:
        proc.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    for rank, value, calls, error in got:
        assert value == {"rows": [1, 2, 3], "by": 0}  # computed once, by rank 0
        assert calls == ([0] if rank == 0 else [])
        assert error == "--dataset bad.jsonl line 3: no messages"  # every rank raises rank 0's error


def test_from_main_on_one_process_just_computes():
    assert distributed.from_main(lambda: 7, distributed.ONE_RANK) == 7
