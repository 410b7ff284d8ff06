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
LONG = dataclasses.replace(GREEDY, max_tokens=400)  # runs until cancelled in these tests


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
    rec, sched, row, running = held(engine, LONG)
    try:
        waiting = sched.submit([row], GREEDY)
        sched.cancel(waiting)
        assert waiting.cancelled() and not sched._pending
        sched.cancel(running)
        rec.gate.set()
        reply = running.result(30)[0]
        assert reply.completion_tokens <= 1  # stopped at its first token, not after 400
        assert sched.stats["cancelled"] == 2 and [n for n, _, _ in rec.calls] == [1]

        stream = sched.submit_stream(row, LONG)
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


# -- the continuous batch: the real engine's prefill / decode_step -----------------------------------


class Steps:
    """The real engine, recording the sequences of each decode step and the step count at each
    prefill; while ``gate`` is closed, decode steps wait for it (from step ``hold_at`` on, when set)
    and ``held`` tells that one waits. Step ``hold_at`` closes the gate itself before it waits, so
    no step past it runs between ``held`` and the test's next move."""

    supports_steps = True

    def __init__(self, engine):
        self.engine = engine
        self.steps: list[list] = []
        self.prefills: list[tuple[int, list]] = []  # (decode steps run before it, its sequences)
        self.gate = threading.Event()
        self.gate.set()
        self.hold_at: int | None = None
        self.held = threading.Event()

    def prefill(self, prompt, params, model=None, n=1, stream=False):
        seqs = self.engine.prefill(prompt, params, model, n=n, stream=stream)
        self.prefills.append((len(self.steps), seqs))
        return seqs

    def new_batch(self, model=None):
        return self.engine.new_batch(model)

    def decode_step(self, batch, seqs):
        if self.hold_at is None or len(self.steps) >= self.hold_at:
            if len(self.steps) == self.hold_at:
                self.gate.clear()
            self.held.set()
            self.gate.wait(30)
        self.steps.append(list(seqs))
        self.engine.decode_step(batch, seqs)

    def generate_ids(self, prompts, params, model=None, cancel=None):
        return self.engine.generate_ids(prompts, params, model=model, cancel=cancel)

    def stream_ids(self, prompt, params, model=None, cancel=None):
        return self.engine.stream_ids(prompt, params, model=model, cancel=cancel)

    def steps_with(self, seq) -> int:
        return sum(any(s is seq for s in step) for step in self.steps)


@pytest.fixture(scope="module")
def endless(tiny):
    """An engine that never stops early: no stop tokens, so every reply runs to max_tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.inference import TransformersEngine
    from swiftkit.templates import get_template

    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    model.generation_config.eos_token_id = None
    engine = TransformersEngine(model, get_template(AutoTokenizer.from_pretrained(tiny), registry=templates()))
    engine.stop_token_ids = []
    return engine


def until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_continuous_batch_replies_equal_one_at_a_time_generate(engine):
    assert engine.supports_steps
    rec = Steps(engine)
    sched = Scheduler(rec, max_batch_size=8, max_wait_ms=0)
    rows = prompts(engine, 6)  # prompts of 6 different lengths
    plain = engine.generate_ids([rows[4]], dataclasses.replace(GREEDY, max_tokens=12))[0].text
    stop = next(plain[i:i + 2] for i in range(2, len(plain) - 1) if "\ufffd" not in plain[i:i + 2])
    asks = [  # (prompt, params, streamed)
        (rows[0], dataclasses.replace(GREEDY, max_tokens=24), False),  # decoding when the others arrive
        (rows[5], dataclasses.replace(GREEDY, max_tokens=10), True),
        (rows[1], dataclasses.replace(GREEDY, max_tokens=3), False),
        (rows[2], dataclasses.replace(GREEDY, max_tokens=16, repetition_penalty=1.3), True),
        (rows[4], dataclasses.replace(GREEDY, max_tokens=12, stop=(stop,)), False),
        (rows[3], dataclasses.replace(GREEDY, max_tokens=7, logprobs=True, top_logprobs=2), False),
        (rows[2], dataclasses.replace(GREEDY, max_tokens=1), True),
    ]
    alone = [engine.generate_ids([p], params)[0] for p, params, _ in asks]
    assert alone[0].completion_tokens > 4
    try:
        rec.hold_at = 3
        rec.gate.clear()
        first = sched.submit([asks[0][0]], asks[0][1])
        assert rec.held.wait(30)  # the first request has decoded 3 steps (4 tokens) and waits
        handles = [sched.submit_stream(p, params) if streamed else sched.submit([p], params)
                   for p, params, streamed in asks[1:]]
        twice = sched.submit([rows[1]] * 2, dataclasses.replace(GREEDY, max_tokens=5))  # n=2: two rows
        rec.gate.set()
        replies = [first.result(30)[0]]
        pieces = {}
        for k, handle in enumerate(handles, start=1):
            if asks[k][2]:
                events = list(handle)
                pieces[k] = "".join(e for e in events if isinstance(e, str))
                replies.append(events[-1])
            else:
                replies.append(handle.result(30)[0])
        pair = twice.result(30)
    finally:
        sched.close()
    assert [r.text for r in replies] == [a.text for a in alone]  # greedy: token for token the same
    assert [(r.completion_tokens, r.finish_reason) for r in replies] == \
        [(a.completion_tokens, a.finish_reason) for a in alone]
    assert replies[4].finish_reason == "stop" and stop not in replies[4].text
    assert [e["token"] for e in replies[5].logprobs] == [e["token"] for e in alone[5].logprobs]
    assert [e["logprob"] for e in replies[5].logprobs] == pytest.approx([e["logprob"] for e in alone[5].logprobs],
                                                                        abs=1e-4)
    assert all(pieces[k] == replies[k].text for k in pieces)
    assert [r.text for r in pair] == [engine.generate_ids([rows[1]], dataclasses.replace(GREEDY, max_tokens=5))[0].text] * 2
    # the later requests joined the first one mid-decode, and decoded beside it
    (start, (head,)), *later = rec.prefills
    assert start == 0 and all(at >= 3 for at, _ in later)
    assert any(len(step) > 1 and any(s is head for s in step) for step in rec.steps)
    assert rec.steps_with(head) == alone[0].completion_tokens - 1  # the first token comes from the prefill
    assert max(len(step) for step in rec.steps) <= 8 and sched.stats["rows"] == 9
    assert not sched._running and sched._batch is None


def held_at_the_third_step(engine, max_batch_size: int, max_wait_ms: int):
    """``(recorder, scheduler, prompt)``: the recorder's third decode step waits for its gate."""
    rec = Steps(engine)
    rec.hold_at = 2
    rec.gate.clear()
    return rec, Scheduler(rec, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms), prompts(engine, 1)[0]


def test_a_withdrawn_stream_frees_its_row_for_the_next_request(endless):
    rec, sched, row = held_at_the_third_step(endless, max_batch_size=1, max_wait_ms=0)
    try:
        stream = sched.submit_stream(row, LONG)
        assert rec.held.wait(30)  # the stream holds the only row, its third decode step waits
        waiting = sched.submit([row], dataclasses.replace(GREEDY, max_tokens=4))
        time.sleep(0.05)
        assert not waiting.running() and list(sched._pending) != []  # no room: it waits in the queue
        stream.close()  # the client went away
        assert list(stream) == []
        rec.gate.set()
        assert waiting.result(30)[0].completion_tokens == 4
        ((_, (streamed,)), (at, _)) = rec.prefills
        assert rec.steps_with(streamed) == 3 and at == 3  # it left after the step under way, not after 400 tokens
        assert all(len(step) == 1 for step in rec.steps)
        until(lambda: not sched._running, "the scheduler never went idle")
    finally:
        sched.close()


def test_a_cancelled_request_leaves_the_batch_and_the_oldest_waiting_one_takes_its_row(endless):
    rec = Steps(endless)
    rec.gate.clear()
    sched = Scheduler(rec, max_batch_size=2, max_wait_ms=0)
    rows = prompts(endless, 3)
    try:
        running = [sched.submit([rows[0]], LONG), sched.submit([rows[1]], LONG)]
        until(lambda: len(rec.prefills) == 2, "the first two never started")
        third = sched.submit([rows[2]], dataclasses.replace(GREEDY, max_tokens=3))
        fourth = sched.submit([rows[2]], dataclasses.replace(GREEDY, max_tokens=3))
        rec.hold_at = 3
        rec.held.clear()
        rec.gate.set()
        assert rec.held.wait(30)  # step 3 closed the gate and waits
        assert len(rec.prefills) == 2 and not third.running()  # the batch is full
        sched.cancel(running[0])
        rec.gate.set()
        reply = running[0].result(30)[0]  # what it had generated when it left
        assert 0 < reply.completion_tokens <= 5  # the prefill's token and at most 4 steps', not 400
        assert third.result(30)[0].completion_tokens == 3
        assert fourth.result(30)[0].completion_tokens == 3
        order = [seqs[0].prompt for _, seqs in rec.prefills]
        assert order == [rows[0], rows[1], rows[2], rows[2]]  # the waiting ones, oldest first
        assert max(len(step) for step in rec.steps) == 2
        sched.cancel(running[1])
        assert running[1].result(30)[0].completion_tokens < 400
        until(lambda: not sched._running, "the scheduler never went idle")
        assert sched.stats["cancelled"] == 2
    finally:
        sched.close()


def test_close_cuts_the_continuous_batch_short_with_scheduler_closed(endless):
    rec, sched, row = held_at_the_third_step(endless, max_batch_size=2, max_wait_ms=50)
    running = sched.submit([row], LONG)
    stream = sched.submit_stream(row, LONG)
    waiting = sched.submit([row], LONG)
    assert rec.held.wait(30)
    threading.Timer(0.3, rec.gate.set).start()  # the step under way ends after the drain's 0.05 s
    assert sched.drain(0.05) is False
    for call in (lambda: running.result(30), lambda: list(stream), lambda: waiting.result(30)):
        with pytest.raises(SchedulerClosed):
            call()
    assert not sched._running and sched._batch is None


def test_each_model_decodes_in_its_own_batch_oldest_first(tiny, make_lora_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.inference import TransformersEngine
    from swiftkit.templates import get_template

    served = TransformersEngine(AutoModelForCausalLM.from_pretrained(tiny).eval(), get_template(
        AutoTokenizer.from_pretrained(tiny), registry=templates()))
    served.add_model("base")
    served.load_adapter("one", str(make_lora_run(seed=1)))
    rec = Steps(served)
    rec.gate.clear()
    sched = Scheduler(rec, max_batch_size=8, max_wait_ms=0)
    rows = prompts(served, 4)
    params = dataclasses.replace(GREEDY, max_tokens=6)
    try:
        asks = [(rows[0], "one"), (rows[1], "base"), (rows[2], "one"), (rows[3], "base")]
        futures = [sched.submit([rows[0]], params, "one")]
        assert rec.held.wait(30)
        futures += [sched.submit([p], params, model) for p, model in asks[1:]]
        rec.gate.set()
        replies = [f.result(30)[0].text for f in futures]
    finally:
        sched.close()
    assert replies == [served.generate_ids([p], params, model=model)[0].text for p, model in asks]
    assert replies[0] != served.generate_ids([rows[0]], params, model="base")[0].text  # the adapter is used
    # "base" waited for the first batch to empty; the "one" behind it waited too (oldest first)
    assert [seqs[0].model for _, seqs in rec.prefills] == ["one", "base", "one", "base"]
    assert all(len({s.model for s in step}) == 1 for step in rec.steps)
