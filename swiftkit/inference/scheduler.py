"""A background thread that batches waiting generation requests for one engine.

``submit(prompts, params, model)`` queues a job (one request: its prompt ids, ``n`` copies for
``n`` choices) and returns a ``concurrent.futures.Future`` of its replies. The worker takes the
oldest job, waits up to ``max_wait_ms`` for more jobs with the same model and sampling params
(``group_key``), and runs them as one left-padded ``engine.generate_ids`` call of at most
``max_batch_size`` rows. Jobs that cannot share (another model or params) wait for the next round,
oldest first. A seeded sampling request always runs alone, so its seed gives the same reply
whatever else is waiting. ``submit_stream`` queues a streaming request; streams run one at a time
on the same worker (the model is used by one generate call at a time) and their pieces are handed
over through a queue.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from swiftkit.inference.protocol import SamplingParams

_unique = itertools.count()


def group_key(model: str | None, params: SamplingParams):
    """Jobs with equal keys may share a batch; a seeded sampling job gets a key of its own."""
    if params.seed is not None and params.temperature > 0:
        return ("alone", next(_unique))
    return (model, params)


@dataclass
class _Job:
    prompts: list[list[int]]
    params: SamplingParams
    model: str | None
    key: object
    future: Future = field(default_factory=Future)
    stream: queue.Queue | None = None  # set for streaming jobs
    cancel: threading.Event = field(default_factory=threading.Event)


class SchedulerClosed(RuntimeError):
    """The scheduler was closed before the job ran."""


class Scheduler:
    """Groups waiting jobs into batches and runs them on one worker thread."""

    def __init__(self, engine, *, max_batch_size: int = 8, max_wait_ms: float = 5.0):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.stats = {"batches": 0, "rows": 0, "max_batch_rows": 0, "streams": 0}
        self._pending: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="swiftkit-scheduler", daemon=True)
        self._thread.start()

    # -- submitting ------------------------------------------------------------------------------

    def _put(self, job: _Job) -> _Job:
        with self._cond:
            if self._closed:
                raise SchedulerClosed("the server is shutting down")
            self._pending.append(job)
            self._cond.notify_all()
        return job

    def submit(self, prompts: list[list[int]], params: SamplingParams, model: str | None = None) -> Future:
        """A future of one :class:`~swiftkit.inference.engine.Generated` per prompt."""
        return self._put(_Job(list(prompts), params, model, group_key(model, params))).future

    def submit_stream(self, prompt: list[int], params: SamplingParams, model: str | None = None) -> Iterator:
        """Text pieces, then the ``Generated`` reply; closing the iterator early cancels generation."""
        job = self._put(_Job([prompt], params, model, ("stream", next(_unique)), stream=queue.Queue()))
        return self._drain(job)

    @staticmethod
    def _drain(job: _Job):
        try:
            while True:
                item = job.stream.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if not isinstance(item, str):
                    return
        finally:
            job.cancel.set()

    # -- the worker ------------------------------------------------------------------------------

    def _take_batch(self) -> list[_Job] | None:
        """The next batch: the oldest job plus same-key jobs that arrive within ``max_wait``."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            head = self._pending[0]
            if head.stream is None and head.key[0] != "alone":
                deadline = time.monotonic() + self.max_wait
                while self._rows(head.key) < self.max_batch_size and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch, rows = [], 0
            for job in list(self._pending):
                if job.key == head.key and (not batch or rows + len(job.prompts) <= self.max_batch_size):
                    batch.append(job)
                    rows += len(job.prompts)
                    self._pending.remove(job)
            return batch

    def _rows(self, key) -> int:
        return sum(len(j.prompts) for j in self._pending if j.key == key)

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if batch[0].stream is not None:
                self._run_stream(batch[0])
            else:
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Job]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        prompts = [p for job in live for p in job.prompts]
        try:
            replies = self.engine.generate_ids(prompts, live[0].params, model=live[0].model)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for job in live:
                job.future.set_exception(exc)
            return
        self.stats["batches"] += 1
        self.stats["rows"] += len(prompts)
        self.stats["max_batch_rows"] = max(self.stats["max_batch_rows"], len(prompts))
        start = 0
        for job in live:
            job.future.set_result(replies[start:start + len(job.prompts)])
            start += len(job.prompts)

    def _run_stream(self, job: _Job) -> None:
        self.stats["streams"] += 1
        try:
            for item in self.engine.stream_ids(job.prompts[0], job.params, model=job.model, cancel=job.cancel):
                job.stream.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            job.stream.put(exc)

    # -- shutdown --------------------------------------------------------------------------------

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking jobs, fail those still waiting, and let the running batch finish."""
        with self._cond:
            self._closed = True
            waiting = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        for job in waiting:
            job.cancel.set()
            if job.stream is not None:
                job.stream.put(SchedulerClosed("the server is shutting down"))
            elif job.future.set_running_or_notify_cancel():
                job.future.set_exception(SchedulerClosed("the server is shutting down"))
        self._thread.join(timeout)
