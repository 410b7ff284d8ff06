"""swiftkit DPO vs plain TRL DPOTrainer: same model, preference pairs, LoRA config and steps, in one run.

Each side trains in its own subprocess (so peak RSS is its own) on the same preference pairs; both
load the embedded SmolLM2-135M-Instruct from the same converted directory. TRL tokenizes the
conversational pairs itself; swiftkit encodes them with its template. Tokens/s counts the real
tokens the model runs on, the same way for both: 2 * prompt + chosen + rejected ids, no padding,
counted as the collator builds each batch (as swiftkit does). When --max_steps ends mid-pass that
includes one batch the data loader fetched ahead and never trained on; the default 32 steps are two
whole passes over the 32 pairs, so the counts are exact.

A third subprocess then scores every pair with a plain transformers forward pass (the tokenizer's
chat template, summed reply log-probs) under the base model and under each side's trained adapter,
so "did it learn" is measured independently of either trainer's own logging. The run also checks
that TRL's prompt ids equal swiftkit's for every row.

Token totals differ slightly by design: TRL's reply ids run to the end of the rendered turn (the
newline after the end-of-turn token), swiftkit's stop at the end-of-turn token the model generates,
so steps/s is printed too. swiftkit's train time includes its final checkpoint save; TRL saves
after the timed part.

    .venv/bin/python benchmarks/dpo_vs_trl.py [--max_steps 32] [--json dpo.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from child import peak_rss_mb, run_child, time_sides

MODEL = "smollm2-135m-instruct"
DEFAULT_DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "preference_pairs.jsonl"
SIGNAL_KEYS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected", "loss")


def _read_pairs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _model_path() -> str:
    """The converted model directory swiftkit loads, so both sides start from the same weights."""
    from swiftkit.commands import build_host
    from swiftkit.models import resolve_model

    return str(resolve_model(MODEL, registry=build_host().registries.models).path)


def _signals(log_history: list[dict]) -> dict:
    """First and last logged value of each DPO metric (the same selection swiftkit reports)."""
    out = {}
    for key in SIGNAL_KEYS:
        values = [h[key] for h in log_history if key in h and "train_runtime" not in h]
        if values:
            out[key] = {"first": values[0], "last": values[-1]}
    return out


# -- training sides ----------------------------------------------------------------------------------


def run_swiftkit(args, out: Path) -> dict:
    import swiftkit

    result = swiftkit.rlhf(
        model=MODEL, rlhf_type="dpo", dataset=[args.data], train_type="lora", lora_rank=8, lora_alpha=32,
        lora_dropout=0.0, beta=args.beta, dpo_loss_type=["sigmoid"], max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
        output_dir=str(out), save_steps=10_000, logging_steps=args.logging_steps, report_to=["none"],
        num_threads=args.num_threads, gradient_checkpointing=False,
    )
    rss = peak_rss_mb()  # before the parity encoding below
    return {"tokens": result["train_tokens"], "seconds": result["train_runtime_s"],
            "tokens_per_s_reported": result["train_tokens_per_s"], "peak_rss_mb": rss,
            "signals": result["signals"], "adapter": result["last_checkpoint"],
            "prompt_ids": _swiftkit_prompt_ids(Path(args.data))}


def _swiftkit_prompt_ids(data: Path) -> list[list[int]]:
    """The prompt ids swiftkit's rlhf recipe trains on, row by row in file order: the same
    tokenizer/template selection, row conversion and pair encoding the recipe uses."""
    from swiftkit.commands import build_host
    from swiftkit.config import ModelArgs, TemplateArgs
    from swiftkit.data.alignment import to_preference_row
    from swiftkit.data.encode_alignment import encode_pair
    from swiftkit.templates.selection import load_tokenizer_and_template

    registries = build_host().registries
    _, _, template = load_tokenizer_and_template(ModelArgs(model=MODEL), TemplateArgs(), registries)
    return [encode_pair(template, to_preference_row(row))["prompt_ids"] for row in _read_pairs(data)]


def run_trl(args, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    set_seed(args.seed)
    path = _model_path()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    # TRL's conversational preference format: it renders and tokenizes these with the chat template.
    rows = Dataset.from_list([
        {"prompt": [{"role": "user", "content": r["prompt"]}],
         "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}]}
        for r in _read_pairs(Path(args.data))
    ])
    config = DPOConfig(
        output_dir=str(out), max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, lr_scheduler_type="cosine", weight_decay=0.1, max_grad_norm=1.0,
        beta=args.beta, loss_type=["sigmoid"], seed=args.seed, save_strategy="no",
        logging_steps=args.logging_steps, logging_first_step=True, report_to="none",
        dataloader_pin_memory=False, max_length=None,
        # fp32 like swiftkit on CPU; TRL's default gradient checkpointing only costs time at this size.
        bf16=False, gradient_checkpointing=False,
    )
    peft_config = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=config, train_dataset=rows, processing_class=tokenizer,
                         peft_config=peft_config)
    # The same instrument as swiftkit's side: 2 * prompt + chosen + rejected ids of the batches
    # trained on (not the one the data loader builds ahead).
    from swiftkit.data.encode_alignment import real_tokens
    from swiftkit.train.callbacks import CountingCollator, JsonlLoggingCallback, TokenCounter

    counted = TokenCounter()
    trainer.data_collator = CountingCollator(trainer.data_collator, counted, count=lambda f: real_tokens("dpo", f))
    trainer.add_callback(JsonlLoggingCallback(out / "logging.jsonl", counted))
    output = trainer.train()
    rss = peak_rss_mb()
    adapter = out / "adapter"
    trainer.model.save_pretrained(str(adapter))
    return {"tokens": counted.tokens, "seconds": output.metrics["train_runtime"], "peak_rss_mb": rss,
            "signals": _signals(trainer.state.log_history), "adapter": str(adapter),
            "prompt_ids": [list(ids) for ids in trainer.train_dataset["prompt_ids"]]}


# -- independent scoring -----------------------------------------------------------------------------


def _reply_logp(model, tokenizer, prompt: str, reply: str) -> float:
    """Summed log-prob of the reply's tokens (its end-of-turn included) after the chat-template prompt."""
    import torch

    user = [{"role": "user", "content": prompt}]
    head = tokenizer(tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
    full = tokenizer(tokenizer.apply_chat_template(user + [{"role": "assistant", "content": reply}],
                                                   tokenize=False), add_special_tokens=False)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(head, full)) if a != b), len(head))
    ids = torch.tensor([full])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    picked = logps.gather(1, targets[:, None])[:, 0]
    return picked[start - 1:].sum().item()


def run_score(args, out: Path) -> dict:
    """Mean logp(chosen) - logp(rejected) over all pairs under the base and each adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    path = _model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    pairs = _read_pairs(Path(args.data))
    scores = {}
    for name, adapter in [("base", None), *[(n, a) for n, a in zip(args.names, args.adapters)]]:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        if adapter:
            model = PeftModel.from_pretrained(model, adapter)
        model.eval()
        margins = [_reply_logp(model, tokenizer, p["prompt"], p["chosen"])
                   - _reply_logp(model, tokenizer, p["prompt"], p["rejected"]) for p in pairs]
        scores[name] = {"mean_margin": sum(margins) / len(margins),
                        "pairs_preferred": sum(m > 0 for m in margins) / len(margins)}
    return scores


# -- driver --------------------------------------------------------------------------------------------


def _child(which: str, args, extra: list[str] = ()) -> dict:
    return run_child(__file__, which, [
        "--data", args.data, "--max_steps", str(args.max_steps), "--batch_size", str(args.batch_size),
        "--num_threads", str(args.num_threads), "--learning_rate", str(args.learning_rate), "--beta",
        str(args.beta), "--seed", str(args.seed), "--logging_steps", str(args.logging_steps), *extra])


def _last(signals: dict, key: str) -> float:
    return signals.get(key, {}).get("last", float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_steps", type=int, default=32,
                        help="optimizer steps per side; 32 x batch 2 = two passes over 32 pairs, ~2 min on 1 core")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--logging_steps", type=int, default=4)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="jsonl of prompt/chosen/rejected strings")
    parser.add_argument("--json", help="also write every number to this file")
    parser.add_argument("--child", choices=["swiftkit", "trl", "score"])
    parser.add_argument("--names", nargs="*", default=[])
    parser.add_argument("--adapters", nargs="*", default=[])
    args = parser.parse_args()

    if args.child:
        out = Path(tempfile.mkdtemp(prefix=f"bench-dpo-{args.child}-"))
        fn = {"swiftkit": run_swiftkit, "trl": run_trl, "score": run_score}[args.child]
        print(json.dumps(fn(args, out)))
        return

    _model_path()  # converts the embedded model once, outside the timings
    results = time_sides(lambda which: _child(which, args))
    scores = _child("score", args, ["--names", *results, "--adapters", *(r["adapter"] for r in results.values())])

    s, t = results["swiftkit"], results["trl"]
    mismatched = [i for i, (a, b) in enumerate(zip(t["prompt_ids"], s["prompt_ids"])) if a != b]
    parity = len(t["prompt_ids"]) == len(s["prompt_ids"]) and not mismatched
    base = scores["base"]
    print(f"SmolLM2-135M-Instruct DPO (sigmoid, beta {args.beta}), LoRA r8 a32 all-linear, fp32, "
          f"{args.max_steps} steps x batch {args.batch_size}, lr {args.learning_rate}, "
          f"{args.num_threads} thread(s), {len(t['prompt_ids'])} pairs")
    detail = f" (rows differing: {mismatched[:10]}; rows {len(t['prompt_ids'])} TRL, {len(s['prompt_ids'])} swiftkit)"
    print(f"prompt ids TRL == swiftkit for every row: {parity}" + ("" if parity else detail))
    print(f"base model: mean logp margin {base['mean_margin']:.3f}, pairs preferred {base['pairs_preferred']:.2f}")
    print(f"{'':9} {'tokens/s':>9} {'train s':>8} {'tokens':>7} {'RSS MiB':>8} {'margin':>8} {'pref':>5} "
          f"{'rw/margin':>10} {'rw/acc':>7}")
    for which, r in results.items():
        sc = scores[which]
        print(f"{which:9} {r['tokens_per_s']:9.1f} {r['seconds']:8.1f} {r['tokens']:7d} {r['peak_rss_mb']:8.0f} "
              f"{sc['mean_margin']:8.3f} {sc['pairs_preferred']:5.2f} {_last(r['signals'], 'rewards/margins'):10.4f} "
              f"{_last(r['signals'], 'rewards/accuracies'):7.3f}")
    print("margin/pref: mean logp(chosen)-logp(rejected) after training and share of pairs with margin > 0 "
          "(plain forward); rw/*: last logged DPO rewards/margins, rewards/accuracies")
    print(f"ratio swiftkit/trl: tokens/s {s['tokens_per_s'] / t['tokens_per_s']:.2f}x, "
          f"steps/s {t['seconds'] / s['seconds']:.2f}x, peak RSS {s['peak_rss_mb'] / t['peak_rss_mb']:.2f}x")
    if args.json:
        report = {"settings": {k: getattr(args, k) for k in ("max_steps", "batch_size", "learning_rate", "beta",
                                                             "seed", "num_threads", "data")},
                  "prompt_ids_parity": parity, "rows_differing": mismatched, "scores": scores,
                  "results": {w: {k: v for k, v in r.items() if k != "prompt_ids"} for w, r in results.items()},
                  "ratio_tokens_per_s": s["tokens_per_s"] / t["tokens_per_s"],
                  "ratio_peak_rss": s["peak_rss_mb"] / t["peak_rss_mb"]}
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
