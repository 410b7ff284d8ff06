"""swiftkit SFT vs plain TRL SFTTrainer: same model, data, LoRA config and steps, in one run.

Each side trains in its own subprocess (so peak RSS is its own) on the same self-cognition rows
written to a jsonl file first; both load the embedded SmolLM2-135M-Instruct from the same converted
directory. Prints real (non-padding) training tokens/s, peak RSS and the swiftkit/TRL ratios.

    .venv/bin/python benchmarks/sft_vs_trl.py --max_steps 10 --batch_size 4 [--num_threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from child import peak_rss_mb, run_child, time_sides


def run_swiftkit(args, data: Path, out: Path) -> dict:
    import swiftkit

    result = swiftkit.sft(
        model="smollm2-135m-instruct", dataset=[str(data)], train_type="lora", lora_rank=8,
        lora_alpha=32, lora_dropout=0.0, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, learning_rate=1e-4, output_dir=str(out),
        save_steps=10_000, logging_steps=10_000, report_to=["none"], num_threads=args.num_threads,
        padding_free=args.padding_free,
    )
    return {"tokens": result["train_tokens"], "seconds": result["train_runtime_s"],
            "loss": result["train_loss"], "peak_rss_mb": peak_rss_mb()}


def run_trl(args, data: Path, out: Path) -> dict:
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from swiftkit.models import (
        resolve_model,  # only to find the same converted model directory
    )

    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    from swiftkit.commands import build_host

    path = resolve_model("smollm2-135m-instruct", registry=build_host().registries.models).path
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = load_dataset("json", data_files=str(data), split="train")
    config = SFTConfig(
        output_dir=str(out), max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=1e-4, save_strategy="no", logging_steps=10_000, report_to="none",
        include_num_input_tokens_seen="non_padding", lr_scheduler_type="cosine", weight_decay=0.1,
        # fp32 like swiftkit on CPU; TRL's default gradient checkpointing costs ~20% here and saves
        # nothing at this size, so it is off to give the baseline its best setting.
        bf16=False, gradient_checkpointing=False,
    )
    peft_config = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=rows, processing_class=tokenizer,
                         peft_config=peft_config)
    output = trainer.train()
    return {"tokens": trainer.state.num_input_tokens_seen, "seconds": output.metrics["train_runtime"],
            "loss": output.training_loss, "peak_rss_mb": peak_rss_mb()}


def _child(which: str, args) -> dict:
    return run_child(__file__, which, [
        "--data", args.data, "--max_steps", str(args.max_steps), "--batch_size", str(args.batch_size),
        "--num_threads", str(args.num_threads), "--padding_free", str(args.padding_free)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_steps", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--padding_free", type=lambda s: s.lower() == "true", default=True)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--child", choices=["swiftkit", "trl"])
    parser.add_argument("--data")
    args = parser.parse_args()

    if args.child:
        out = Path(tempfile.mkdtemp(prefix=f"bench-{args.child}-"))
        fn = run_swiftkit if args.child == "swiftkit" else run_trl
        print(json.dumps(fn(args, Path(args.data), out)))
        return

    from swiftkit.commands import build_host
    from swiftkit.data import load_rows

    rows = load_rows([f"self-cognition#{args.rows}"], registries=build_host().registries, model_name=("小星", "Nova"),
                     model_author=("极光实验室", "Aurora Lab"))
    data = Path(tempfile.mkdtemp(prefix="bench-data-")) / "rows.jsonl"
    data.write_text("".join(json.dumps({"messages": r["messages"]}, ensure_ascii=False) + "\n" for r in rows))
    args.data = str(data)
    _child("swiftkit", args)  # warm-up: converts the embedded model once, outside the timings

    results = time_sides(lambda which: _child(which, args))
    print(f"SmolLM2-135M LoRA r8 all-linear, {args.max_steps} steps x batch {args.batch_size}, "
          f"{args.num_threads} thread(s), swiftkit padding_free={args.padding_free}")
    print(f"{'':10} {'tokens/s':>10} {'train s':>9} {'tokens':>8} {'peak RSS MiB':>13} {'loss':>7}")
    for which, r in results.items():
        print(f"{which:10} {r['tokens_per_s']:10.1f} {r['seconds']:9.1f} {r['tokens']:8d} "
              f"{r['peak_rss_mb']:13.0f} {r['loss']:7.3f}")
    s, t = results["swiftkit"], results["trl"]
    print(f"ratio swiftkit/trl: tokens/s {s['tokens_per_s'] / t['tokens_per_s']:.2f}x, "
          f"peak RSS {s['peak_rss_mb'] / t['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
