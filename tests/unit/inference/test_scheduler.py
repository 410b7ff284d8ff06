"""The batching scheduler on a real tiny engine: which jobs share a batch, results per job, shutdown."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from hosts import templates

from swiftkit.inference.protocol import SamplingParams
from swiftkit.inference.scheduler import Scheduler, SchedulerClosed, group_key

GREEDY = SamplingParams(max_tokens=4)


class Recording:
    """The real engine, recording each generate call's rows, model and params."""

    def __init__(self, engine):
        self.engine = engine
        self.calls: list[tuple[int, str | None, SamplingParams]] = []
        self.gate = threading.Event()
        self.gate.set()

    def generate_ids(self, prompts, params, model=None, cancel=None):
        self.gate.wait(30)
        self.calls.append((len(prompts), model, params))
        return self.engine.generate_ids(prompts, params, model=model, cancel=cancel)

    def stream_ids(self, prompt, params, model=None, cancel=None):
        self.calls.append((1, model, params))
        return self.engine.stream_ids(prompt, params, model=model, cancel=cancel)


@pytest.fixture(scope="module")
def engine(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.inference import TransformersEngine
    from swiftkit.templates import get_template

    tok = AutoTokenizer.from_pretrained(tiny)
    return TransformersEngine(AutoModelForCausalLM.from_pretrained(tiny).eval(), get_template(tok, registry=templates()))


def wait_running(future):
    """Until the worker has taken ``future``'s job (and is held at the gate)."""
    for _ in range(30_000):
        if future.running():
            return
        time.sleep(0.001)
    raise AssertionError("the worker never took the job")


def prompts(engine, k):
    return [engine.prompt_ids([{"role": "user", "content": "word " * (i + 1)}]) for i in range(k)]


def test_waiting_jobs_with_equal_settings_share_batches_up_to_the_limit(engine):
    rec = Recording(engine)
    rec.gate.clear()  # hold the worker in its first call so the rest queue up
    sched = Scheduler(rec, max_batch_size=4, max_wait_ms=0)
    try:
        rows = prompts(engine, 7)
        first = sched.submit(rows[:1], GREEDY)
        wait_running(first)
        futures = [sched.submit([p], GREEDY) for p in rows[1:]]
        rec.gate.set()
        results = [f.result(30)[0] for f in [first, *futures]]
    finally:
        sched.close()
    assert [n for n, _, _ in rec.calls] == [1, 4, 2]
    assert sched.stats["max_batch_rows"] == 4 and sched.stats["rows"] == 7
    singles = [engine.generate_ids([p], GREEDY)[0] for p in rows]
    assert [r.text for r in results] == [s.text for s in singles]  # each job gets its own reply


def test_jobs_group_by_model_and_params_oldest_first(engine):
    rec = Recording(engine)
    rec.gate.clear()
    sched = Scheduler(rec, max_batch_size=8, max_wait_ms=0)
    other = dataclasses.replace(GREEDY, stop=("x",))
    try:
        rows = prompts(engine, 3)
        first = sched.submit(rows[:1], GREEDY)
        wait_running(first)
        jobs = [(rows[0], other), (rows[1], GREEDY), (rows[2], other), (rows[1], GREEDY)]
        futures = [sched.submit([p], params) for p, params in jobs]
        futures.append(sched.submit([rows[2]] * 3, GREEDY))  # n=3: three rows of one job
        rec.gate.set()
        out = [f.result(30) for f in futures]
    finally:
        sched.close()
    assert [(n, p.stop) for n, _, p in rec.calls] == [(1, ()), (2, ("x",)), (5, ())]
    assert [len(o) for o in out] == [1, 1, 1, 1, 3]


def test_seeded_sampling_runs_alone_and_streams_hand_over_pieces(engine):
    seeded = SamplingParams(max_tokens=4, temperature=1.0, seed=1)
    assert group_key(None, seeded) != group_key(None, seeded)
    assert group_key("a", GREEDY) == group_key("a", dataclasses.replace(GREEDY)) != group_key("b", GREEDY)
    sched = Scheduler(engine, max_batch_size=8, max_wait_ms=50)
    try:
        row = prompts(engine, 1)[0]
        a, b = sched.submit([row], seeded), sched.submit([row], seeded)
        assert a.result(30)[0].text == b.result(30)[0].text  # same seed, each alone: same sample
        assert sched.stats["max_batch_rows"] == 1
        events = list(sched.submit_stream(row, dataclasses.replace(GREEDY, max_tokens=8)))
        whole = engine.generate_ids([row], dataclasses.replace(GREEDY, max_tokens=8))[0]
        assert "".join(e for e in events if isinstance(e, str)) == whole.text
        assert events[-1] == whole
    finally:
        sched.close()


def held(engine, params=GREEDY):
    """``(recording engine, one-row scheduler, a prompt, the running job's future)``: the job is
    held at the engine's gate until the test opens it."""
    rec = Recording(engine)
    rec.gate.clear()
    sched = Scheduler(rec, max_batch_size=1, max_wait_ms=0)
    row = prompts(engine, 1)[0]
    running = sched.submit([row], params)
    wait_running(running)
    return rec, sched, row, running


def in_thread(call) -> threading.Thread:
    """``call`` started on a thread of its own."""
    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_close_fails_waiting_and_running_jobs_and_refuses_new_ones(engine):
    rec, sched, row, running = held(engine)
    waiting = sched.submit([row], GREEDY)
    stream = sched.submit_stream(row, GREEDY)
    closer = in_thread(sched.close)
    while not sched._closed:  # close() has failed the waiting jobs before the running one ends
        time.sleep(0.001)
    rec.gate.set()
    closer.join(30)
    with pytest.raises(SchedulerClosed):  # cut short: never a truncated success
        running.result(30)
    with pytest.raises(SchedulerClosed):
        waiting.result(30)
    with pytest.raises(SchedulerClosed):
        list(stream)
    with pytest.raises(SchedulerClosed):
        sched.submit([row], GREEDY)


def test_drain_finishes_what_it_can_in_time_then_fails_the_rest(engine):
    rec, sched, row, running = held(engine)
    queued = sched.submit([row], GREEDY)
    drained = []
    drainer = in_thread(lambda: drained.append(sched.drain(30)))
    while not sched._closed:
        time.sleep(0.001)
    with pytest.raises(SchedulerClosed):  # new work is refused at once
        sched.submit([row], GREEDY)
    rec.gate.set()  # the work in hand finishes within the timeout
    drainer.join(30)
    assert drained == [True]
    assert running.result(1)[0].text and queued.result(1)[0].text

    rec, sched, row, running = held(engine, dataclasses.replace(GREEDY, max_tokens=64))
    queued = sched.submit([row], GREEDY)
    threading.Timer(0.5, rec.gate.set).start()  # still running when the 0.2 s drain ends
    assert sched.drain(0.2) is False
    with pytest.raises(SchedulerClosed):
        queued.result(30)
    with pytest.raises(SchedulerClosed):
        running.result(30)


def test_cancel_withdraws_a_waiting_job_and_stops_a_batch_whose_jobs_all_left(engine):
    long = dataclasses.replace(GREEDY, max_tokens=400)
    rec, sched, row, running = held(engine, long)
    try:
        waiting = sched.submit([row], GREEDY)
        sched.cancel(waiting)
        assert waiting.cancelled() and not sched._pending
        sched.cancel(running)
        rec.gate.set()
        reply = running.result(30)[0]
        assert reply.completion_tokens <= 1  # stopped at its first token, not after 400
        assert sched.stats["cancelled"] == 2 and [n for n, _, _ in rec.calls] == [1]

        stream = sched.submit_stream(row, long)
        assert isinstance(next(stream), str)
        stream.close()  # the client went away after its first piece
        assert list(stream) == []
        for _ in range(3000):  # the worker is free again: a small request runs at once
            if not sched._running:
                break
            time.sleep(0.01)
        assert sched.submit([row], GREEDY).result(30)[0].text
    finally:
        sched.close()
