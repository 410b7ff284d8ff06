"""Serving throughput: swiftkit's continuously batching scheduler vs one-at-a-time plain ``model.generate``.

Closed-loop clients (threads) each send one chat request, wait for the whole reply, and send the
next, until ``--requests`` requests per concurrency level are done. At each of 1, 4, 16 and 64
clients, without streaming ("plain") and with streaming ("stream"), it reports requests/s (requests
/ wall time), time to first token (streams: submit to the first text piece, p50), p50 and p99
latency (submit to the whole reply) and generated tokens/s for:
  - baseline: a lock serialises requests; each builds its prompt with
    ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)`` and runs plain
    ``model.generate`` on it alone (a stream passes a streamer that notes when the first new token
    arrives), then decodes the new tokens;
  - swiftkit: exactly the deploy server's path, in-process: ``prepare_chat(engine, ChatRequest)``
    then ``Scheduler(TransformersEngine, max_batch_size, max_wait_ms)``'s ``submit(...).result()``
    or ``submit_stream(...)`` (iterated to its reply), where every request joins one running decode
    batch of at most ``max_batch_size`` sequences between two decode steps;
  - with ``--http``, also swiftkit through the real OpenAI-compatible server (FastAPI + uvicorn on
    localhost) called with the ``openai`` client (streams with ``stream=True``).
All sides use the same loaded model, the same prompts in the same order and greedy decoding with
the same ``max_new_tokens``. EOS is switched off (the model's ``generation_config.eos_token_id`` is
cleared and the engine has no stop ids), so every request generates exactly ``max_new_tokens``
tokens on every side; this is checked. The "same text" column counts replies equal to the
baseline's (batched fp32 maths may flip a near-tie token now and then); "steps" is the number of
decode steps the scheduler ran for the level (the baseline: its requests).

Measured on a 2-core CPU machine without a GPU while other jobs kept both cores busy (load
average 6-7): ``--requests 32 --max_new_tokens 16`` took 21 minutes there (1284 s of measuring),
most of it in the one-at-a-time baseline; on a quiet machine it is several times faster. The
numbers move with that load by tens of percent from one level to the next, so compare sides within
a level. The lock in the baseline is not fair, so at 4+ clients some requests wait through many
others (its p99). At 16 and 64 clients the scheduler's rows (``--max_batch_size``, deploy's default
8) bound how many requests decode together; the others wait in its queue. There, at 16 streaming
clients (``--concurrency 16 --modes stream``, about 2 minutes), swiftkit served 2.6x the baseline's
requests/s with 8 rows and 5.7x with ``--max_batch_size 16``, every reply the same text.

    .venv/bin/python benchmarks/serve_throughput.py [--requests 32] [--max_new_tokens 32]
        [--concurrency 1 4 16 64] [--modes plain stream] [--num_threads 2] [--max_batch_size 8]
        [--batch_wait_ms 5] [--http] [--model PATH_OR_NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import socket
import threading
import time

QUESTIONS = [
    "What is the capital of France?",
    "Give me three tips for staying focused while studying.",
    "Explain what a binary search does in one paragraph.",
    "Write a haiku about autumn rain.",
    "Why is the sky blue?",
    "How do I boil an egg so the yolk stays soft?",
    "Name two differences between a list and a tuple in Python.",
    "Summarise the plot of Romeo and Juliet in two sentences.",
    "What should I pack for a weekend hiking trip in the mountains?",
    "Translate 'good morning, how are you?' into Spanish.",
    "What is photosynthesis?",
    "Suggest a name for a small coffee shop near the sea.",
    "How many minutes are there in a week? Show the calculation.",
    "Tell me a short fact about octopuses.",
    "What is the difference between weather and climate?",
    "Write a polite email line asking to move a meeting to Friday.",
]


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def run_clients(fn, concurrency: int, requests: int) -> dict:
    """Run ``fn(i)`` (``(text, tokens, seconds to the first piece or None)``) for i in range(requests)
    from ``concurrency`` closed-loop client threads."""
    counter, lock = iter(range(requests)), threading.Lock()
    latencies: list[float] = [0.0] * requests
    outputs: list = [None] * requests
    failures: list[BaseException] = []

    def client():
        while True:
            with lock:
                i = next(counter, None)
            if i is None or failures:
                return
            start = time.perf_counter()
            try:
                outputs[i] = fn(i)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                failures.append(exc)
                return
            latencies[i] = time.perf_counter() - start

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if failures:
        raise failures[0]
    firsts = [o[2] for o in outputs if o[2] is not None]
    return {"wall": wall, "req_s": requests / wall, "p50": _percentile(latencies, 50),
            "p99": _percentile(latencies, 99), "ttft": _percentile(firsts, 50) if firsts else None,
            "tokens": sum(o[1] for o in outputs), "outputs": outputs}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_server(engine, max_batch_size: int, batch_wait_ms: float):
    """The deploy app (its own scheduler) served by uvicorn on localhost; yields its base URL."""
    import uvicorn

    from swiftkit.inference.scheduler import Scheduler
    from swiftkit.serving.app import build_app

    scheduler = Scheduler(engine, max_batch_size=max_batch_size, max_wait_ms=batch_wait_ms)
    port = _free_port()
    app = build_app(engine, scheduler, address=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    with contextlib.redirect_stderr(io.StringIO()):  # the server logs one line per request
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}/v1", scheduler
        finally:
            server.should_exit = True
            thread.join()


class _FirstToken:
    """A ``generate`` streamer noting when the first new token arrives (the first ``put`` is the prompt)."""

    def __init__(self):
        self.puts, self.at = 0, None

    def put(self, value) -> None:
        self.puts += 1
        if self.puts == 2:
            self.at = time.perf_counter()

    def end(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="registered name or local model dir")
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level and mode")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--modes", nargs="+", choices=["plain", "stream"], default=["plain", "stream"])
    parser.add_argument("--num_threads", type=int, default=2, help="torch threads (0: torch's default)")
    parser.add_argument("--max_batch_size", type=int, default=8, help="scheduler rows per batch (deploy default)")
    parser.add_argument("--batch_wait_ms", type=float, default=5.0, help="scheduler wait (deploy default)")
    parser.add_argument("--http", action="store_true", help="also measure through the HTTP server + openai client")
    args = parser.parse_args()

    import torch

    from swiftkit.commands import build_host
    from swiftkit.inference.engine import TransformersEngine
    from swiftkit.inference.openai import prepare_chat
    from swiftkit.inference.protocol import ChatRequest
    from swiftkit.inference.scheduler import Scheduler
    from swiftkit.models import (
        load_model,
        load_tokenizer,
        resolve_model,
        set_num_threads,
    )
    from swiftkit.templates.template import get_template

    set_num_threads(args.num_threads)
    registries = build_host().registries
    resolved = resolve_model(args.model, registry=registries.models)
    model = load_model(resolved).eval()
    tokenizer = load_tokenizer(resolved)
    model.generation_config.eos_token_id = None  # every request generates exactly max_new_tokens
    pad = tokenizer.pad_token_id
    n_new = args.max_new_tokens
    conversations = [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(args.requests)]

    engine = TransformersEngine(model, get_template(tokenizer, registry=registries.templates))
    engine.stop_token_ids = []
    name = "bench"
    engine.add_model(name, None)
    scheduler = Scheduler(engine, max_batch_size=args.max_batch_size, max_wait_ms=args.batch_wait_ms)
    model_lock = threading.Lock()

    def baseline(i: int, stream: bool):
        asked = time.perf_counter()
        with model_lock:
            ids = tokenizer.apply_chat_template(conversations[i], add_generation_prompt=True, tokenize=True)
            input_ids = torch.tensor([list(ids["input_ids"])])
            first = _FirstToken() if stream else None
            with torch.inference_mode():
                out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=first,
                                     max_new_tokens=n_new, do_sample=False, pad_token_id=pad)
            new = out[0, input_ids.shape[1]:]
            return (tokenizer.decode(new, skip_special_tokens=True), len(new),
                    first.at - asked if stream else None)

    def swiftkit(i: int, stream: bool):
        asked = time.perf_counter()
        req = ChatRequest.from_dict({"model": name, "messages": conversations[i], "max_tokens": n_new,
                                     "temperature": 0.0})
        prompt, params = prepare_chat(engine, req)
        if not stream:
            (reply,) = scheduler.submit([prompt], params, req.model).result()
            return reply.text, reply.completion_tokens, None
        first, pieces = None, []
        for event in scheduler.submit_stream(prompt, params, req.model):
            if isinstance(event, str):
                first = first or time.perf_counter() - asked
                pieces.append(event)
            else:
                reply = event
        if "".join(pieces) != reply.text:
            raise SystemExit(f"streamed pieces differ from the reply of request {i}")
        return reply.text, reply.completion_tokens, first

    sides = {"baseline": baseline, "swiftkit": swiftkit}
    client = None
    if args.http:
        import openai

        stack = contextlib.ExitStack()
        base_url, http_scheduler = stack.enter_context(http_server(engine, args.max_batch_size, args.batch_wait_ms))
        client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)

        def swiftkit_http(i: int, stream: bool):
            asked = time.perf_counter()
            ask = dict(model=name, messages=conversations[i], max_tokens=n_new, temperature=0.0)
            if not stream:
                r = client.chat.completions.create(**ask)
                return r.choices[0].message.content, r.usage.completion_tokens, None
            first, pieces, tokens = None, [], 0
            for chunk in client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}):
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter() - asked
                    pieces.append(chunk.choices[0].delta.content)
            return "".join(pieces), tokens, first

        sides["swiftkit-http"] = swiftkit_http

    # the prompts are the same token ids on both sides; warm-up outside the timings
    for conv in conversations[:len(QUESTIONS)]:
        ids = list(tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)["input_ids"])
        if ids != engine.prompt_ids(conv):
            raise SystemExit(f"prompt ids differ between apply_chat_template and the engine for {conv!r}")
    baseline(0, False)
    warm = [prepare_chat(engine, ChatRequest.from_dict({"model": name, "messages": conv, "max_tokens": n_new}))
            for conv in conversations[:args.max_batch_size]]
    for fut in [scheduler.submit([prompt], params, name) for prompt, params in warm]:
        fut.result()

    started = time.perf_counter()
    results: dict[tuple[int, str, str], dict] = {}
    for c in args.concurrency:
        for mode in args.modes:
            for side, fn in sides.items():
                sched = http_scheduler if side == "swiftkit-http" else scheduler
                before = dict(sched.stats)
                r = run_clients(lambda i, fn=fn, mode=mode: fn(i, mode == "stream"), c, args.requests)
                bad = [o[1] for o in r["outputs"] if o[1] != n_new]
                if bad:
                    raise SystemExit(f"{side} ({mode}) at {c} clients generated {bad[0]} tokens, not {n_new}")
                r["steps"] = sched.stats["steps"] - before["steps"] if side != "baseline" else args.requests
                results[c, mode, side] = r
    if args.http:
        stack.close()

    print(f"{resolved.path}: {args.requests} requests per level and mode, {n_new} new tokens each (EOS off), "
          f"greedy, {torch.get_num_threads()} torch thread(s), scheduler max_batch_size {args.max_batch_size}, "
          f"batch_wait_ms {args.batch_wait_ms:g}; measured in {time.perf_counter() - started:.0f} s")
    print(f"{'clients':>7} {'mode':6} {'side':14} {'req/s':>7} {'ttft s':>7} {'p50 s':>7} {'p99 s':>7} "
          f"{'tokens/s':>9} {'steps':>6} {'same text':>10}")
    for (c, mode, side), r in results.items():
        ref = results[c, mode, "baseline"]["outputs"]
        same = sum(a[0] == b[0] for a, b in zip(r["outputs"], ref))
        ttft = f"{r['ttft']:7.2f}" if r["ttft"] is not None else f"{'-':>7}"
        print(f"{c:7d} {mode:6} {side:14} {r['req_s']:7.2f} {ttft} {r['p50']:7.2f} {r['p99']:7.2f} "
              f"{r['tokens'] / r['wall']:9.1f} {r['steps']:6d} {f'{same}/{args.requests}':>10}")
    for side in [s for s in sides if s != "baseline"]:
        print(f"ratio {side}/baseline:")
        for c in args.concurrency:
            for mode in args.modes:
                s, b = results[c, mode, side], results[c, mode, "baseline"]
                ttft = f", ttft {s['ttft'] / b['ttft']:.2f}x" if mode == "stream" else ""
                print(f"  {c:3d} clients {mode:6}: req/s {s['req_s'] / b['req_s']:.2f}x, "
                      f"p50 {s['p50'] / b['p50']:.2f}x, p99 {s['p99'] / b['p99']:.2f}x{ttft}")
    scheduler.close()


if __name__ == "__main__":
    main()
