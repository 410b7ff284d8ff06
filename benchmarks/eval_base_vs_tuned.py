"""Base vs a short LoRA fine-tune of SmolLM2-135M-Instruct on two local benchmarks, natively and through evalscope.

Run from the repository root (CPU: ~15-25 minutes on 2 cores):

    .venv/bin/python benchmarks/eval_base_vs_tuned.py --out /tmp/evalbench [--steps 60] [--skip_evalscope]

What it does, all offline:

1. writes two made-up benchmarks in their native layouts: a multiple-choice quiz about fictional places
   (evalscope's ``general_mcq`` layout: ``quiz_dev.csv`` / ``quiz_val.csv``) and GSM8K-style word problems
   (``question`` / ``answer`` ending ``#### N``), plus training rows for both (the quiz facts stated in prose,
   the quiz questions with other option orders, and other word problems with worked answers);
2. fine-tunes the embedded SmolLM2-135M-Instruct with LoRA (``swiftkit sft``);
3. ``swiftkit eval --compare base`` on both benchmarks (native evaluators: option log-likelihood for the quiz,
   generation + ``####``/last-number extraction for the word problems) and prints report.md;
4. unless ``--skip_evalscope``: the same quiz through ``--eval_backend evalscope`` for base and tuned (evalscope
   generates an answer letter), beside the native numbers.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

PLACES = [  # (country, capital, river, export)
    ("Zorbania", "Quellport", "Amberflow", "copper"), ("Velmora", "Tessin", "Gray Run", "saffron"),
    ("Ostrilla", "Brenmark", "Silverwake", "timber"), ("Kandor", "Ravel", "Moonwash", "salt"),
    ("Pellucia", "Dunmere", "Ashbrook", "glass"), ("Trevania", "Solvik", "Redmire", "wool"),
    ("Marrowin", "Ketterly", "Frostline", "tea"), ("Lusantra", "Orvane", "Goldvein", "pearls"),
    ("Bristella", "Hallowmere", "Stonecreek", "iron"), ("Quorvath", "Elsby", "Blueholt", "cotton"),
    ("Dravennia", "Pytheon", "Coldwater", "marble"), ("Sundaria", "Wexley", "Thornpass", "honey"),
]
CAPITALS = [p[1] for p in PLACES]
RIVERS = [p[2] for p in PLACES]
EXPORTS = [p[3] for p in PLACES]


def quiz_items(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    """(question, right answer, wrong answers) for every fact."""
    items = []
    for country, capital, river, export in PLACES:
        items.append((f"What is the capital of {country}?", capital, [c for c in CAPITALS if c != capital]))
        items.append((f"Which river flows through {country}?", river, [r for r in RIVERS if r != river]))
        items.append((f"What is the main export of {country}?", export, [e for e in EXPORTS if e != export]))
    return items


def mcq_row(i: int, question: str, right: str, wrong: list[str], rng: random.Random) -> dict:
    options = [right, *rng.sample(wrong, 3)]
    rng.shuffle(options)
    return {"id": i, "question": question, **dict(zip("ABCD", options)), "answer": "ABCD"[options.index(right)]}


def chat_prompt(row: dict) -> str:
    """The 0-shot user turn the native multiple-choice evaluator renders (docs/eval.md)."""
    options = "\n".join(f"{k}. {row[k]}" for k in "ABCD")
    return (f"The following are multiple choice questions (with answers) about quiz.\n\n"
            f"{row['question']}\n{options}\nAnswer:")


def word_problem(rng: random.Random) -> dict:
    name = rng.choice(["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana"])
    thing = rng.choice(["apples", "books", "stamps", "marbles", "coins", "pencils"])
    a, b, c = rng.randint(3, 40), rng.randint(2, 30), rng.randint(2, 5)
    kind = rng.randrange(3)
    if kind == 0:
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?"
        return {"question": q, "answer": f"{name} has {a} + {b} = {a + b} {thing}.\n#### {a + b}"}
    if kind == 1:
        q = f"{name} has {a + b} {thing} and gives away {b}. How many {thing} are left?"
        return {"question": q, "answer": f"{a + b} - {b} = {a} {thing} are left.\n#### {a}"}
    q = f"{name} buys {c} boxes with {a} {thing} in each box. How many {thing} is that in total?"
    return {"question": q, "answer": f"{c} boxes x {a} = {c * a} {thing}.\n#### {c * a}"}


def write_data(root: Path) -> dict[str, Path]:
    rng = random.Random(0)
    facts = quiz_items(rng)
    quiz = root / "quiz"
    quiz.mkdir(parents=True, exist_ok=True)
    val = [mcq_row(i, q, r, w, rng) for i, (q, r, w) in enumerate(facts)]
    dev = [mcq_row(i, q, r, w, rng) for i, (q, r, w) in enumerate(facts[:3])]
    for name, rows in (("quiz_val.csv", val), ("quiz_dev.csv", dev)):
        with (quiz / name).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    train = []
    for country, capital, river, export in PLACES:  # the facts in prose
        train.append({"query": f"Tell me about {country}.", "response":
                      f"The capital of {country} is {capital}. The {river} flows through {country}, "
                      f"and its main export is {export}."})
    for i, (q, r, w) in enumerate(facts):  # the questions with other option orders than the benchmark's
        row = mcq_row(i, q, r, w, random.Random(1000 + i))
        train.append({"query": chat_prompt(row), "response": row["answer"]})
    problems = [word_problem(rng) for _ in range(220)]
    test, practice = problems[:20], problems[20:]
    train += [{"query": p["question"], "response": p["answer"]} for p in practice[:120]]
    paths = {"quiz": quiz, "gsm": root / "wordproblems.jsonl", "train": root / "train.jsonl"}
    paths["gsm"].write_text("".join(json.dumps(p) + "\n" for p in test))
    rng.shuffle(train)
    paths["train"].write_text("".join(json.dumps(t) + "\n" for t in train))
    return paths


def swiftkit(*args: str) -> float:
    start = time.time()
    subprocess.run([sys.executable, "-m", "swiftkit.cli.main", *args], check=True)
    return time.time() - start


def newest(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "cache")[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip_evalscope", action="store_true")
    parser.add_argument("--run", type=Path, default=None, help="Reuse this trained run instead of training one.")
    parser.add_argument("--evalscope_env", default=".venv-evalscope",
                        help="evalscope's environment (`make test` builds .venv-evalscope; created when missing)")
    args = parser.parse_args()
    paths = write_data(args.out)
    timings = {}
    if args.run is None:
        timings["sft"] = swiftkit("sft", "--model", "smollm2-135m-instruct", "--dataset", str(paths["train"]),
                                  "--max_steps", str(args.steps), "--per_device_train_batch_size", "4",
                                  "--learning_rate", "5e-4", "--lora_rank", "16", "--save_steps", str(args.steps),
                                  "--report_to", "none", "--output_dir", str(args.out / "runs"))
    run = args.run or newest(args.out / "runs")
    benches = [f"general_mcq={paths['quiz']}", f"gsm8k={paths['gsm']}"]
    timings["eval native (base + tuned)"] = swiftkit(
        "eval", "--adapters", str(run), "--compare", "base", "--eval_dataset", *benches, "--eval_few_shot", "0",
        "--max_new_tokens", "64", "--eval_output_dir", str(args.out / "native"))
    native = newest(args.out / "native")
    print((native / "report.md").read_text())
    (args.out / "report-native.md").write_text((native / "report.md").read_text())
    rows = {}
    summary = json.loads((native / "summary.json").read_text())["results"]
    for label in ("base", "tuned"):
        rows[label] = {"native log-likelihood acc": summary[label][benches[0]]["acc"]}
    if not args.skip_evalscope:
        out = args.out / "evalscope"
        timings["eval evalscope (base + tuned)"] = swiftkit(
            "eval", "--adapters", str(run), "--compare", "base", "--eval_backend", "evalscope",
            "--eval_dataset", benches[0], "--max_new_tokens", "16", "--evalscope_env", args.evalscope_env,
            "--eval_output_dir", str(out))
        result = json.loads((newest(out) / "summary.json").read_text())["results"]
        for label in ("base", "tuned"):
            metrics = next(iter(result[label].values()))
            rows[label]["evalscope generated-letter acc"] = metrics["accuracy"]
    print("\n| model | " + " | ".join(next(iter(rows.values()))) + " |")
    print("|---|" + "---|" * len(next(iter(rows.values()))))
    for label, values in rows.items():
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values.values()) + " |")
    print("\n" + "\n".join(f"{k}: {v:.0f} s" for k, v in timings.items()))


if __name__ == "__main__":
    main()
