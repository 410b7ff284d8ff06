"""A background thread that runs one engine's generation requests: a continuous batch, or whole batches.

``submit(prompts, params, model)`` queues a job (one request: its prompt ids, ``n`` copies for
``n`` choices) and returns a ``concurrent.futures.Future`` of its replies; ``submit_stream`` queues a
streaming request and returns an iterator of its text pieces, then its reply (handed over through a
queue); ``submit_scoring(prompts, top, model)`` queues prompts to be scored rather than continued
(``engine.prompt_logprobs``: completions with ``echo`` and ``logprobs``).

With an engine that decodes token by token (``engine.supports_steps``: the transformers engine's
``prefill`` / ``decode_step``) the worker batches continuously. It keeps a running batch of
sequences (a job's ``n`` rows are ``n`` sequences; streamed and non-streamed jobs mix) and, between
two decode steps, drops the sequences that finished or whose client went away, then admits waiting
jobs oldest first while the batch has room for all their rows (``max_batch_size`` sequences; a job
with more rows than that runs when the batch is empty): each is prefilled (its first token comes
from that) and decodes with the others from the next step on. So a request waits for a free row,
never for a whole other batch to finish. Each sequence keeps its own sampling settings, stop tokens,
stop strings and ``max_tokens``; greedy replies are those of the request generated alone. The batch
serves one model (adapter) at a time: a job for another model waits, and everything behind it too,
until the batch has emptied. When the batch is empty the worker waits up to ``max_wait_ms`` after a
job arrives, so that a burst of requests starts together. A scoring job runs between two steps,
batched with the waiting scoring jobs of the same model and ``top``. A seeded sampling request runs
alone, with the engine's whole-request ``generate_ids`` / ``stream_ids``, once the batch has emptied,
so its seed gives the same reply whatever else is running. A failure in a decode step fails every
sequence in the batch; a failure in a prefill fails that job only.

With any other engine (vLLM) the worker runs whole batches: it takes the oldest job, waits up to
``max_wait_ms`` for more jobs with the same model and sampling params (``group_key``), and runs them
as one left-padded ``engine.generate_ids`` call of at most ``max_batch_size`` rows. Jobs that cannot
share (another model or params) wait for the next round, oldest first; a seeded sampling request
always runs alone. Streams run one at a time on the same worker (``engine.stream_ids``); scoring
jobs with the same model and ``top`` share batches the same way.

``cancel(future)`` withdraws a request whose client went away: a waiting job leaves the queue at
once. In a continuous batch a running job's sequences leave the batch at the next step, freeing
their rows (its future gets what was generated so far); in a whole batch the call stops at its next
token once every job in it is cancelled. A stream is withdrawn when its consumer closes the
iterator, the same way. ``drain(timeout)`` is the graceful shutdown: new jobs are
refused with :class:`SchedulerClosed` at once, the queued and running ones get ``timeout`` seconds
to finish, then whatever is left fails with ``SchedulerClosed`` (a stream gets it instead of its
final reply, so a cut-off stream never ends as a success).

``stats``: ``rows`` (sequences started), ``max_batch_rows`` (the most that decoded together),
``steps`` (decode steps of the continuous batch), ``batches`` (whole-batch engine calls),
``streams`` (streaming jobs started) and ``cancelled`` (jobs withdrawn with ``cancel``).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from swiftkit.inference.protocol import SamplingParams, sampling

_unique = itertools.count()


def group_key(model: str | None, params: SamplingParams):
    """Jobs with equal keys may share a batch; a seeded sampling job gets a key of its own."""
    if params.seed is not None and sampling(params):
        return ("alone", next(_unique))
    return (model, params)


@dataclass(eq=False)  # a job is itself: queue and batch membership by identity
class _Job:
    prompts: list[list[int]]
    params: SamplingParams
    model: str | None
    key: object
    future: Future = field(default_factory=Future)
    stream: queue.Queue | None = None  # set for streaming jobs
    score_top: int | None = None  # set for scoring jobs: how many alternatives per token
    cancel: threading.Event = field(default_factory=threading.Event)
    shut: bool = False  # cancelled by the shutdown, not by its client
    seqs: list = field(default_factory=list)  # its sequences in the continuous batch


class _AllCancelled:
    """The ``cancel`` handed to the engine for a batch: set once every job in it is cancelled."""

    def __init__(self, jobs: list[_Job]):
        self.jobs = jobs

    def is_set(self) -> bool:
        return all(job.cancel.is_set() for job in self.jobs)


_WITHDRAWN = object()  # ends a stream's queue when its consumer leaves


class _Stream:
    """What ``submit_stream`` returns: iterates one streaming job's queue; ``close()`` withdraws it."""

    def __init__(self, scheduler: Scheduler, job: _Job):
        self._scheduler, self._job, self._done = scheduler, job, False

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._job.stream.get()
        if item is _WITHDRAWN or isinstance(item, BaseException) or not isinstance(item, str):
            self._done = True
        if item is _WITHDRAWN:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._scheduler._withdraw(self._job)


class SchedulerClosed(RuntimeError):
    """The scheduler was closed before the job could finish."""


SHUTTING_DOWN = "the server is shutting down; retry against another replica or after the restart"


def _alone(job: _Job) -> bool:
    """A seeded sampling job: it runs alone, so its seed gives the same reply whatever else runs."""
    return job.params.seed is not None and sampling(job.params)


class Scheduler:
    """Runs waiting jobs in a continuous batch (or whole batches) on one worker thread."""

    def __init__(self, engine, *, max_batch_size: int = 8, max_wait_ms: float = 5.0):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.stats = {"batches": 0, "steps": 0, "rows": 0, "max_batch_rows": 0, "streams": 0, "cancelled": 0}
        self.stepping = bool(getattr(engine, "supports_steps", False))  # continuous batching
        self._pending: deque[_Job] = deque()
        self._decoding: list[_Job] = []  # jobs whose sequences are in the continuous batch
        self._solo: list[_Job] = []  # jobs in a whole-request engine call
        self._batch = None  # the engine's DecodeBatch while sequences decode
        self._jobs: dict[Future, _Job] = {}
        self._cond = threading.Condition()
        self._closed = False  # no new jobs
        self._stopped = False  # the worker ends
        self._thread = threading.Thread(target=self._loop, name="swiftkit-scheduler", daemon=True)
        self._thread.start()

    @property
    def _running(self) -> list[_Job]:
        """The jobs being generated now."""
        return self._decoding + self._solo

    # -- submitting ------------------------------------------------------------------------------

    def _put(self, job: _Job) -> _Job:
        with self._cond:
            if self._closed:
                raise SchedulerClosed(SHUTTING_DOWN)
            self._pending.append(job)
            if job.stream is None:
                self._jobs[job.future] = job
                job.future.add_done_callback(self._forget)
            self._cond.notify_all()
        return job

    def _forget(self, future: Future) -> None:
        with self._cond:
            self._jobs.pop(future, None)

    def cancel(self, future: Future) -> None:
        """Withdraw the job of ``future`` (its client went away): out of the queue if it waits;
        running in the continuous batch, its sequences leave at the next step and its future gets
        what they generated; in a whole batch, its rows stop once every job in the batch is cancelled."""
        with self._cond:
            job = self._jobs.get(future)
            if job is None:
                return
            job.cancel.set()
            self.stats["cancelled"] += 1
            if job in self._pending:
                self._pending.remove(job)
                job.future.cancel()

    def submit(self, prompts: list[list[int]], params: SamplingParams, model: str | None = None) -> Future:
        """A future of one :class:`~swiftkit.inference.engine.Generated` per prompt."""
        return self._put(_Job(list(prompts), params, model, group_key(model, params))).future

    def submit_scoring(self, prompts: list[list[int]], top: int, model: str | None = None) -> Future:
        """A future of, per prompt, its tokens' log-probability entries (``engine.prompt_logprobs``)."""
        job = _Job(list(prompts), SamplingParams(), model, ("score", model, top), score_top=top)
        return self._put(job).future

    def submit_stream(self, prompt: list[int], params: SamplingParams, model: str | None = None) -> _Stream:
        """An iterator of text pieces, then the ``Generated`` reply; its ``close()`` (from any thread,
        also while another thread waits on it) withdraws the stream, ending generation."""
        return _Stream(self, self._put(_Job([prompt], params, model, ("stream", next(_unique)),
                                            stream=queue.Queue())))

    def _withdraw(self, job: _Job) -> None:
        with self._cond:
            if job in self._pending:
                self._pending.remove(job)
        job.cancel.set()
        job.stream.put(_WITHDRAWN)

    # -- the worker ------------------------------------------------------------------------------

    def _take_batch(self) -> list[_Job] | None:
        """The next batch: the oldest job plus same-key jobs that arrive within ``max_wait``."""
        with self._cond:
            while not self._pending and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            head = self._pending[0]
            if head.stream is None and head.key[0] != "alone":
                deadline = time.monotonic() + self.max_wait
                while self._rows(head.key) < self.max_batch_size and not self._stopped:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch = self._same_key(head)
            self._solo = batch
            return batch

    def _rows(self, key) -> int:
        return sum(len(j.prompts) for j in self._pending if j.key == key)

    def _loop(self) -> None:
        if self.stepping:
            self._step_loop()
            return
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:  # its jobs were withdrawn while the batch filled
                continue
            self._run_whole(batch)

    def _run_whole(self, batch: list[_Job]) -> None:
        """Run ``batch`` as whole requests (a stream alone, or one generate call), then clear the solo slot."""
        try:
            if batch[0].stream is not None:
                self._run_stream(batch[0])
            else:
                self._run_batch(batch)
        finally:
            with self._cond:
                self._solo = []
                self._cond.notify_all()

    def _run_batch(self, batch: list[_Job]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        prompts = [p for job in live for p in job.prompts]
        try:
            if live[0].score_top is not None:
                replies = self.engine.prompt_logprobs(prompts, live[0].score_top, model=live[0].model,
                                                      cancel=_AllCancelled(live))
            else:
                replies = self.engine.generate_ids(prompts, live[0].params, model=live[0].model,
                                                   cancel=_AllCancelled(live))
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for job in live:
                job.future.set_exception(exc)
            return
        self.stats["batches"] += 1
        self.stats["rows"] += len(prompts)
        self.stats["max_batch_rows"] = max(self.stats["max_batch_rows"], len(prompts))
        start = 0
        for job in live:
            if job.shut:  # cut short by the shutdown: never a truncated success
                job.future.set_exception(SchedulerClosed(SHUTTING_DOWN))
            else:
                job.future.set_result(replies[start:start + len(job.prompts)])
            start += len(job.prompts)

    def _run_stream(self, job: _Job) -> None:
        if job.cancel.is_set():
            return
        self.stats["streams"] += 1
        try:
            for item in self.engine.stream_ids(job.prompts[0], job.params, model=job.model, cancel=job.cancel):
                if job.shut:
                    job.stream.put(SchedulerClosed(SHUTTING_DOWN))
                    return
                job.stream.put(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            job.stream.put(SchedulerClosed(SHUTTING_DOWN) if job.shut else exc)

    # -- the continuous batch (engines with prefill / decode_step) --------------------------------

    def _step_loop(self) -> None:
        while True:
            self._drop_cancelled()
            work = self._take_work()
            if work is None:
                break
            whole, admitted = work
            if whole:
                self._run_whole(whole)
            for job in admitted:
                self._start(job)
            self._step()
        self._drop_cancelled()  # close() marked every running job: each fails with SchedulerClosed

    def _batchable(self, job: _Job) -> bool:
        return job.score_top is None and not _alone(job)

    def _take_work(self) -> tuple[list[_Job], list[_Job]] | None:
        """``(whole, admitted)``: jobs for one whole-request engine call (scoring jobs sharing a key, or
        a seeded sampling job once the batch is empty) and jobs that join the batch, oldest first while
        their rows fit; None once the scheduler is stopped."""
        with self._cond:
            while not self._stopped and not self._pending and not self._decoding:
                self._cond.wait()
            if not self._decoding and self._pending and self._batchable(self._pending[0]):
                model, deadline = self._pending[0].model, time.monotonic() + self.max_wait
                while not self._stopped and sum(len(j.prompts) for j in self._pending if self._batchable(j)
                                                and j.model == model) < self.max_batch_size:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            if self._stopped:
                return None
            model = self._decoding[0].model if self._decoding else None
            rows = sum(len(job.prompts) for job in self._decoding)
            whole: list[_Job] = []
            admitted: list[_Job] = []
            while self._pending:
                head = self._pending[0]
                if head.score_top is not None:
                    if not admitted:
                        whole = self._same_key(head)
                    break
                if _alone(head):
                    if not self._decoding and not admitted:
                        whole = [self._pending.popleft()]
                    break
                if (self._decoding or admitted) and head.model != model:
                    break  # the batch serves one model at a time
                if rows and rows + len(head.prompts) > self.max_batch_size:
                    break
                admitted.append(self._pending.popleft())
                model, rows = head.model, rows + len(head.prompts)
            self._solo = whole
            self._decoding.extend(admitted)
            return whole, admitted

    def _same_key(self, head: _Job) -> list[_Job]:
        """``head`` and the waiting jobs with its key, oldest first, up to ``max_batch_size`` rows."""
        jobs, rows = [], 0
        for job in list(self._pending):
            if job.key == head.key and (not jobs or rows + len(job.prompts) <= self.max_batch_size):
                jobs.append(job)
                rows += len(job.prompts)
                self._pending.remove(job)
        return jobs

    def _start(self, job: _Job) -> None:
        """Prefill ``job``'s prompts: its sequences join the batch (a job they already finish ends here)."""
        if job.cancel.is_set():  # withdrawn or shut down between the queue and here
            self._drop(job)
            return
        if job.stream is None and not job.future.set_running_or_notify_cancel():
            self._leave(job)
            return
        self.stats["rows"] += len(job.prompts)
        if job.stream is not None:
            self.stats["streams"] += 1
        try:
            if self._batch is None:
                self._batch = self.engine.new_batch(job.model)
            for prompt, same in itertools.groupby(job.prompts):
                job.seqs += self.engine.prefill(prompt, job.params, job.model, n=len(list(same)),
                                                stream=job.stream is not None)
        except BaseException as exc:  # noqa: BLE001 - handed to the request
            self._fail(job, exc)
            self._leave(job)
            return
        self._settle(job)

    def _step(self) -> None:
        """One decode step of every unfinished sequence, then hand over pieces and finished replies."""
        live = [seq for job in self._decoding if not job.cancel.is_set() for seq in job.seqs if not seq.done]
        if not live:
            return
        try:
            self.engine.decode_step(self._batch, live)
        except BaseException as exc:  # noqa: BLE001 - handed to every request in the batch
            for job in list(self._decoding):
                self._fail(job, exc)
                self._leave(job)
            self._batch = None
            return
        self.stats["steps"] += 1
        self.stats["max_batch_rows"] = max(self.stats["max_batch_rows"], len(live))
        for job in list(self._decoding):
            self._settle(job)

    def _settle(self, job: _Job) -> None:
        """Hand over a stream's new pieces; end ``job`` once all its sequences are done."""
        if job.cancel.is_set():
            return  # dropped before the next step
        if job.stream is not None:
            for seq in job.seqs:
                for piece in seq.take_pieces():
                    job.stream.put(piece)
        if all(seq.done for seq in job.seqs):
            if job.stream is not None:
                job.stream.put(job.seqs[0].reply)
            else:
                job.future.set_result([seq.reply for seq in job.seqs])
            self._leave(job)

    def _drop_cancelled(self) -> None:
        for job in [job for job in self._decoding if job.cancel.is_set()]:
            self._drop(job)

    def _drop(self, job: _Job) -> None:
        """End a cancelled job: its sequences leave the batch at the next step."""
        for seq in job.seqs:
            seq.stop()
        if job.shut:  # cut short by the shutdown: never a truncated success
            self._fail(job, SchedulerClosed(SHUTTING_DOWN))
        elif job.stream is None:
            if job.future.running():
                job.future.set_result([seq.reply for seq in job.seqs])
            else:
                job.future.cancel()
        # a withdrawn stream's consumer is gone: nothing to hand over
        self._leave(job)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        exc = SchedulerClosed(SHUTTING_DOWN) if job.shut else exc
        if job.stream is not None:
            job.stream.put(exc)
        elif not job.future.done():
            job.future.set_exception(exc)

    def _leave(self, job: _Job) -> None:
        with self._cond:
            if job in self._decoding:
                self._decoding.remove(job)
            if not self._decoding:
                self._batch = None  # frees the cache; the next job may serve another model
            self._cond.notify_all()

    # -- shutdown --------------------------------------------------------------------------------

    def drain(self, timeout: float) -> bool:
        """Refuse new jobs, give the queued and running ones ``timeout`` seconds, then :meth:`close`.
        True when everything finished in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            while (self._pending or self._running) and time.monotonic() < deadline:
                self._cond.wait(min(0.1, max(deadline - time.monotonic(), 0)))
            finished = not (self._pending or self._running)
        self.close()
        return finished

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking jobs, fail those still waiting and cut the running ones short (each fails
        with :class:`SchedulerClosed`), then wait up to ``timeout`` for the worker to end."""
        with self._cond:
            self._closed = self._stopped = True
            waiting = list(self._pending)
            self._pending.clear()
            for job in self._running:
                job.shut = True
                job.cancel.set()
            self._cond.notify_all()
        for job in waiting:
            job.cancel.set()
            if job.stream is not None:
                job.stream.put(SchedulerClosed(SHUTTING_DOWN))
            elif job.future.set_running_or_notify_cancel():
                job.future.set_exception(SchedulerClosed(SHUTTING_DOWN))
        self._thread.join(timeout)
