"""`make demo`: teach the embedded SmolLM2-135M-Instruct a new name with LoRA, on this CPU.

Asks "who are you?" before and after a short LoRA fine-tune on the shipped self-cognition data
and prints both answers. Run: `.venv/bin/python examples/demo.py [--max_steps N] [--output_dir D]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import swiftkit

NAME = ("小星", "Nova")
AUTHOR = ("极光实验室", "Aurora Lab")
QUESTIONS = ["Who are you?", "What is your name?", "你是谁？"]


def ask(questions_file: Path, out: Path, **model) -> list[str]:
    swiftkit.infer(val_dataset=[str(questions_file)], result_path=str(out), max_new_tokens=48, **model)
    return [json.loads(line)["response"] for line in out.read_text().splitlines()]


def main() -> int:
    swiftkit.preload_allocator()  # trains under tcmalloc when installed, as `swiftkit sft` does (starts over once)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_steps", type=int, default=40)
    parser.add_argument("--output_dir", default="demo_output")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="swiftkit-demo-"))
    questions = work / "questions.jsonl"
    questions.write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": q}]}) + "\n" for q in QUESTIONS)
    )

    print("== before fine-tuning ==", flush=True)
    before = ask(questions, work / "before.jsonl", model="smollm2-135m-instruct")

    start = time.perf_counter()
    result = swiftkit.sft(
        model="smollm2-135m-instruct",
        train_type="lora",
        dataset=["self-cognition#400"],
        model_name=list(NAME),
        model_author=list(AUTHOR),
        max_steps=args.max_steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        lora_rank=8,
        lora_alpha=32,
        warmup_ratio=0.05,
        logging_steps=5,
        save_steps=args.max_steps,
        output_dir=args.output_dir,
        report_to=["tensorboard"],
    )
    train_s = time.perf_counter() - start

    print("== after fine-tuning ==", flush=True)
    after = ask(questions, work / "after.jsonl", adapters=[result["last_checkpoint"]])

    print("\n" + "=" * 72)
    for q, b, a in zip(QUESTIONS, before, after):
        print(f"Q: {q}\n  before: {b.strip()}\n  after:  {a.strip()}\n")
    print(f"run dir:          {result['run_dir']}")
    print(f"checkpoint:       {result['last_checkpoint']}")
    print(f"training:         {result['global_step']} steps in {train_s:.0f} s, "
          f"{result['train_tokens_per_s']} tokens/s, peak RSS {result['peak_rss_mb']:.0f} MiB")
    names = [n.lower() for n in NAME]
    used_after = any(n in a.lower() for a in after for n in names)
    used_before = any(n in b.lower() for b in before for n in names)
    print(f"new name used:    before={used_before} after={used_after}")
    return 0 if used_after and not used_before else 1


if __name__ == "__main__":
    sys.exit(main())
