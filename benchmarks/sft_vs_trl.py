"""swiftkit SFT vs plain TRL SFTTrainer on one job, in one run: tokens/s, peak RSS, start-up, ratios.

The job (``chat_job.JOB``): SmolLM2-135M-Instruct LoRA r8/alpha 32/dropout 0.05 on all linear layers,
fp32, batch 4, max_length 512, 30 steps over 400 mixed-length chat rows (``chat_job.write_rows``),
2 threads. Each side trains in a child process of its own (peak RSS is its own): swiftkit once per
``--recompute`` granularity, and TRL's SFTTrainer with its defaults (gradient checkpointing on) on the
same rows, LoRA config and steps. Tokens are the non-padding input tokens trained on. ``--bf16 G ...``
adds swiftkit sides with ``--bf16 true`` (autocast) at those granularities; ``--peft_dropout G ...`` adds
swiftkit sides that keep peft's own LoRA dropout (a dropped copy of each adapted layer's input) instead
of the fused dropout swiftkit trains with, the "before" of that change.

Each swiftkit side runs under the allocator ``swiftkit sft`` picks (tcmalloc when installed, see
``swiftkit.core.allocator``); ``--system_allocator G ...`` adds swiftkit sides under the system's malloc
(glibc), and ``--trl_tcmalloc`` a TRL side under tcmalloc too. TRL's own side runs as TRL users run it.

    .venv/bin/python benchmarks/sft_vs_trl.py [--max_steps 30] [--recompute none selective full]
        [--num_threads 2] [--rows 400] [--bf16 none ...] [--peft_dropout none ...] [--system_allocator none ...]
        [--trl_tcmalloc] [--memory_breakdown]

``--memory_breakdown`` instead trains two steps on the job's first batch in this process for each
granularity and prints resident memory after each phase (load, forward, backward, optimizer step)
and, for ``none``, the bytes autograd keeps for backward by the module that saved them: as swiftkit
trains, and (``--peft_dropout none``) as before its memory work: peft's LoRA dropout, the model's own
MLPs and attention, logits then cross-entropy.
With ``swift`` (ms-swift) on PATH in another environment, ``--ms_swift PATH_TO_SWIFT`` adds its side.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chat_job import JOB, write_rows
from child import peak_rss_mb, run_child, time_sides

from swiftkit.core import allocator


def run_swiftkit(args, data: Path, out: Path) -> dict:
    start = time.perf_counter()
    import swiftkit

    if args.peft_dropout_one:
        import swiftkit.recipes.steps as steps

        steps.lean_lora_dropout = lambda model: model  # the run keeps peft's own LoRA dropout
    job = {**JOB, "max_steps": args.max_steps, "num_threads": args.num_threads}
    result = swiftkit.sft(dataset=[str(data)], output_dir=str(out), save_steps=10_000, logging_steps=10_000,
                          report_to=["none"], recompute_granularity=args.recompute_one, bf16=args.bf16_one, **job)
    return {"tokens": result["train_tokens"], "seconds": result["train_runtime_s"], "loss": result["train_loss"],
            "peak_rss_mb": peak_rss_mb(), "overhead_s": time.perf_counter() - start - result["train_runtime_s"],
            "allocator": allocator.current()}


def _model_path() -> str:
    from swiftkit.commands import build_host
    from swiftkit.models import resolve_model

    return resolve_model(JOB["model"], registry=build_host().registries.models).path


def run_trl(args, data: Path, out: Path) -> dict:
    start = time.perf_counter()
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(args.num_threads)
    path = _model_path()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = load_dataset("json", data_files=str(data), split="train")
    config = SFTConfig(
        output_dir=str(out), max_steps=args.max_steps, per_device_train_batch_size=JOB["per_device_train_batch_size"],
        learning_rate=JOB["learning_rate"], max_length=JOB["max_length"], save_strategy="no", logging_steps=10_000,
        report_to="none", include_num_input_tokens_seen="non_padding", bf16=False, use_cpu=True,
        assistant_only_loss=False, completion_only_loss=None)  # TRL's defaults otherwise (checkpointing on)
    peft_config = LoraConfig(r=JOB["lora_rank"], lora_alpha=JOB["lora_alpha"], lora_dropout=JOB["lora_dropout"],
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=rows, processing_class=tokenizer,
                         peft_config=peft_config)
    output = trainer.train()
    seconds = output.metrics["train_runtime"]
    return {"tokens": int(trainer.state.num_input_tokens_seen), "seconds": seconds, "loss": output.training_loss,
            "peak_rss_mb": peak_rss_mb(), "overhead_s": time.perf_counter() - start - seconds,
            "allocator": allocator.current()}


def run_ms_swift(args, data: Path, out: Path) -> dict:
    """ms-swift's ``swift sft`` on the same job (its own environment); tokens counted by swiftkit's
    tokenizer over the rows its 30 steps read is not available, so tokens/s uses swiftkit's count."""
    cmd = [args.ms_swift, "sft", "--model", _model_path(), "--dataset", str(data), "--train_type", "lora",
           "--lora_rank", str(JOB["lora_rank"]), "--lora_alpha", str(JOB["lora_alpha"]), "--lora_dropout",
           str(JOB["lora_dropout"]), "--target_modules", "all-linear", "--max_length", str(JOB["max_length"]),
           "--per_device_train_batch_size", str(JOB["per_device_train_batch_size"]), "--max_steps",
           str(args.max_steps), "--learning_rate", str(JOB["learning_rate"]), "--torch_dtype", "float32",
           "--output_dir", str(out), "--save_strategy", "no", "--report_to", "none"]
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"ms-swift failed: {proc.stderr[-2000:]}")
    rss = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS"))
    wall = time.perf_counter() - start
    runtime = next((json.loads(line)["train_runtime"] for line in proc.stdout.splitlines()
                    if line.startswith("{") and "train_runtime" in line), wall)
    return {"tokens": args.tokens, "seconds": float(runtime), "loss": float("nan"), "peak_rss_mb": rss / 1024,
            "overhead_s": wall - float(runtime)}


def memory_breakdown(args, data: Path) -> None:
    """Resident memory by phase and saved-for-backward bytes by module kind, per granularity."""
    import os

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.commands import build_host
    from swiftkit.models.segment_attention import use_segment_sdpa
    from swiftkit.templates import get_template
    from swiftkit.train.collate import make_collator
    from swiftkit.train.lean_mlp import lean_gated_mlps
    from swiftkit.train.lora_dropout import fuse_lora_dropout
    from swiftkit.train.losses import token_cross_entropy
    from swiftkit.train.recompute import checkpoint_kwargs
    from swiftkit.train.trainer import label_only_loss

    def rss() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    torch.set_num_threads(args.num_threads)
    path = _model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    template = get_template(tokenizer, max_length=JOB["max_length"], registry=build_host().registries.templates)
    rows = [json.loads(line) for line in data.read_text().splitlines()[: JOB["per_device_train_batch_size"]]]
    features = [{k: v for k, v in template.encode(r).items() if k in ("input_ids", "labels")} for r in rows]
    batch = make_collator(tokenizer, padding_free=True)(features)
    print(f"first batch of the job: {batch['input_ids'].shape[1]} tokens (padding-free), "
          f"{int((batch['labels'] != -100).sum())} labelled; one process per granularity")
    granularity = args.recompute_one
    torch.manual_seed(0)
    unloaded = rss()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=JOB["lora_rank"], lora_alpha=JOB["lora_alpha"],
                                             lora_dropout=JOB["lora_dropout"], target_modules="all-linear"))
    before = args.peft_dropout_one  # peft's dropout, the model's own MLPs, attention and logits + cross-entropy
    if not before:  # as swiftkit trains: fused LoRA dropout, lean SwiGLU MLPs without recompute, SDPA per sequence
        fuse_lora_dropout(model)
        use_segment_sdpa(model)
        if granularity == "none":
            lean_gated_mlps(model)
    label = f"{granularity}{' (peft dropout)' if args.peft_dropout_one else ''}"
    kwargs = checkpoint_kwargs(granularity, {"use_reentrant": False})
    if kwargs is not None:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.train()
    loaded = rss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=JOB["learning_rate"])
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved, seen, stack = collections.Counter(), set(), []
    def enter(module, *_):
        stack.append(type(module).__name__)

    def leave(*_):
        stack.pop()  # returns None: the module's output stays as it is

    hooks = [m.register_forward_pre_hook(enter) for m in model.modules()]
    hooks += [m.register_forward_hook(leave) for m in model.modules()]

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in params and key not in seen:
            seen.add(key)
            saved["/".join(stack[-2:]) or "loss"] += t.untyped_storage().nbytes()
        return t

    for step in range(2):
        saved.clear(), seen.clear()
        start = rss()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            if before:  # the label-only logits, then cross-entropy (no fused head)
                targets = batch["labels"][:, 1:]
                keep = (targets != -100).any(dim=0).nonzero().squeeze(-1)
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
                loss = token_cross_entropy(logits, targets[:, keep])
                del logits
            else:
                loss, _ = label_only_loss(model, dict(batch))
        forward = rss()
        loss.backward()
        backward = rss()
        optimizer.step(), optimizer.zero_grad()
        print(f"  {label:22} step {step}: start {start:6.0f}  after forward {forward:6.0f}  after backward "
              f"{backward:6.0f}  after optimizer {rss():6.0f} MiB (loading {loaded - unloaded:+.0f} MiB; "
              f"loss {loss.item():.4f})")
    if granularity == "none":
        print(f"  kept for backward with {label}: {sum(saved.values()) / 2**20:.0f} MiB, by module (parent/child; "
              "Linear/Linear, Linear/DroppedLinear: LoRA's A and B, Linear/Dropout: peft's dropout masks):")
        for where, size in saved.most_common(8):
            print(f"    {where:45} {size / 2**20:7.0f} MiB")
    for h in hooks:
        h.remove()
    del model, optimizer


def _child(which: str, args) -> dict:
    flags = ["--data", args.data, "--max_steps", str(args.max_steps), "--num_threads", str(args.num_threads)]
    side, _, granularity = which.partition(":")
    granularity, _, variant = granularity.partition(":")
    if side == "trl":
        variant, granularity = granularity, ""
    if granularity:
        flags += ["--recompute_one", granularity]
    if variant == "bf16":
        flags += ["--bf16_one"]
    if variant == "peft-dropout":
        flags += ["--peft_dropout_one"]
    if args.ms_swift:
        flags += ["--ms_swift", args.ms_swift, "--tokens", str(args.tokens)]
    if side == "swiftkit":  # as `swiftkit sft` runs: under tcmalloc when installed, unless the side says system
        environ = None if variant == "system" else allocator.training_env()
    else:
        environ = allocator.training_env({**os.environ, "SWIFTKIT_ALLOCATOR": "tcmalloc"}) if variant else None
    return run_child(__file__, side, flags, environ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_steps", type=int, default=JOB["max_steps"])
    parser.add_argument("--num_threads", type=int, default=JOB["num_threads"])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--recompute", nargs="+", default=["none", "selective", "full"],
                        choices=["none", "selective", "full"])
    parser.add_argument("--memory_breakdown", action="store_true")
    parser.add_argument("--ms_swift", help="path of ms-swift's `swift` executable (its own environment)")
    parser.add_argument("--child", choices=["swiftkit", "trl", "ms-swift", "breakdown"])
    parser.add_argument("--recompute_one", default="none")
    parser.add_argument("--bf16_one", action="store_true")
    parser.add_argument("--bf16", nargs="*", default=[], choices=["none", "selective", "full"],
                        help="also train swiftkit with --bf16 true at these granularities")
    parser.add_argument("--peft_dropout_one", action="store_true")
    parser.add_argument("--peft_dropout", nargs="*", default=[], choices=["none", "selective", "full"],
                        help="also train swiftkit with peft's own LoRA dropout at these granularities")
    parser.add_argument("--system_allocator", nargs="*", default=[], choices=["none", "selective", "full"],
                        help="also train swiftkit under the system's malloc (not tcmalloc) at these granularities")
    parser.add_argument("--trl_tcmalloc", action="store_true", help="also train TRL under tcmalloc")
    parser.add_argument("--tokens", type=int, default=0)
    parser.add_argument("--data")
    args = parser.parse_args()

    if args.child == "breakdown":
        memory_breakdown(args, Path(args.data))
        return
    if args.child:
        out = Path(tempfile.mkdtemp(prefix=f"bench-{args.child}-"))
        fn = {"swiftkit": run_swiftkit, "trl": run_trl, "ms-swift": run_ms_swift}[args.child]
        print(json.dumps(fn(args, Path(args.data), out)))
        return

    data = write_rows(Path(tempfile.mkdtemp(prefix="bench-data-")) / "rows.jsonl", n=args.rows)
    args.data = str(data)
    if args.memory_breakdown:
        runs = [(g, ["--peft_dropout_one"]) for g in args.peft_dropout] + [(g, []) for g in args.recompute]
        for k, (granularity, extra) in enumerate(runs):
            out = subprocess.run([sys.executable, __file__, "--child", "breakdown", "--data", args.data,
                                  "--recompute_one", granularity, "--num_threads", str(args.num_threads), *extra],
                                 capture_output=True, text=True, check=True).stdout
            print("\n".join(line for line in out.splitlines() if k == 0 or not line.startswith("first batch")))
        return
    sides = ([f"swiftkit:{g}" for g in args.recompute] + [f"swiftkit:{g}:peft-dropout" for g in args.peft_dropout]
             + [f"swiftkit:{g}:bf16" for g in args.bf16] + [f"swiftkit:{g}:system" for g in args.system_allocator]
             + ["trl"] + (["trl:tcmalloc"] if args.trl_tcmalloc else []))
    _child(sides[0], argparse.Namespace(**{**vars(args), "max_steps": 1, "ms_swift": None}))  # warm-up
    results = time_sides(lambda which: _child(which, args), sides=sides)
    if args.ms_swift:
        args.tokens = results[sides[0]]["tokens"]
        results["ms-swift"] = time_sides(lambda which: _child(which, args), sides=["ms-swift"])["ms-swift"]
    print(f"SmolLM2-135M LoRA r{JOB['lora_rank']} all-linear, fp32, {args.max_steps} steps x batch "
          f"{JOB['per_device_train_batch_size']}, max_length {JOB['max_length']}, {args.rows} rows, "
          f"{args.num_threads} thread(s); swiftkit per --recompute_granularity, TRL SFTTrainer defaults")
    print(f"{'':28} {'tokens/s':>9} {'train s':>8} {'tokens':>7} {'peak RSS MiB':>13} {'start+end s':>12} {'loss':>7} "
          "allocator")
    for which, r in results.items():
        print(f"{which:28} {r['tokens_per_s']:9.1f} {r['seconds']:8.1f} {r['tokens']:7d} {r['peak_rss_mb']:13.0f} "
              f"{r['overhead_s']:12.1f} {r['loss']:7.3f} {r.get('allocator', '')}")
    t = results["trl"]
    for which, r in results.items():
        if which != "trl":
            print(f"ratio {which}/trl: tokens/s {r['tokens_per_s'] / t['tokens_per_s']:.2f}x, "
                  f"peak RSS {r['peak_rss_mb'] / t['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
