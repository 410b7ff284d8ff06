"""--dry_run's memory estimate against the measured peak of the same run: SmolLM2-135M, LoRA and QLoRA, CPU.

For each configuration it runs, each in a fresh process, ``swiftkit sft ... --dry_run`` (the estimate:
``memory.peak_bytes`` of the plan it logs) and the same command without ``--dry_run`` (the measured
peak: ``peak_rss_mb`` of train_result.json), and prints both and their ratio.

The data is a generated file whose rows all have about the same length (``--rows`` rows of about
``--row_tokens`` tokens), so every batch of the short run is as large as the largest batch the
estimate plans for; ``--data self-cognition`` uses the shipped self-cognition rows instead (their
lengths vary: a 5-step run rarely meets the largest batch, so the estimate is higher).

    .venv/bin/python benchmarks/dry_run_memory.py [--configs lora qlora] [--max_steps 5] [--batch_size 4]
        [--max_length 512] [--data uniform|self-cognition]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {
    "lora": ["--train_type", "lora"],
    "qlora": ["--train_type", "lora", "--quant_method", "bnb", "--quant_bits", "4"],
    "qlora8": ["--train_type", "lora", "--quant_method", "bnb", "--quant_bits", "8"],
    "full": ["--train_type", "full"],
    "lora_gc": ["--train_type", "lora", "--gradient_checkpointing", "true"],
    "lora_ga": ["--train_type", "lora", "--gradient_accumulation_steps", "2"],
}
WORDS = ("sea", "sky", "river", "stone", "light", "wind", "field", "cloud", "night", "tree")


def write_rows(path: Path, rows: int, row_tokens: int) -> Path:
    """Conversations of about ``row_tokens`` tokens each (SmolLM2's tokenizer: ~1 token per word)."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            words = [WORDS[(i + k) % len(WORDS)] for k in range(row_tokens // 2)]
            reply = " ".join(words)
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me about number {i % 10}."},
                                              {"role": "assistant", "content": reply}]}) + "\n")
    return path


def swiftkit_cli() -> list[str]:
    return [sys.executable, "-c", "import sys; from swiftkit.cli.main import main; sys.exit(main(sys.argv[1:]))"]


def run(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([*swiftkit_cli(), *argv], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"failed: swiftkit {shlex.join(argv)}")
    return proc


def estimate(argv: list[str]) -> dict:
    proc = run([*argv, "--dry_run"])
    line = next(x for x in proc.stderr.splitlines() if x.startswith("[swiftkit] dry run: "))
    return json.loads(line.split(": ", 1)[1])


def measure(argv: list[str], out: Path) -> dict:
    run(argv)
    result = sorted(out.glob("v*-*/train_result.json"))[-1]
    return json.loads(result.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["lora", "qlora"], choices=sorted(CONFIGS))
    parser.add_argument("--max_steps", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--data", choices=("uniform", "self-cognition"), default="uniform")
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--row_tokens", type=int, default=120)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="swiftkit-dry-run-memory-"))
    if args.data == "uniform":
        dataset = [str(write_rows(work / "rows.jsonl", args.rows, args.row_tokens))]
    else:
        dataset = [f"self-cognition#{args.rows}", "--model_name", "Nova", "--model_author", "Aurora Lab"]
    rows = []
    for name in args.configs:
        out = work / name
        argv = ["sft", "--model", "smollm2-135m-instruct", "--dataset", *dataset, *CONFIGS[name],
                "--max_steps", str(args.max_steps), "--per_device_train_batch_size", str(args.batch_size),
                "--max_length", str(args.max_length), "--save_steps", "100000", "--logging_steps", "1",
                "--report_to", "none", "--output_dir", str(out)]
        print(f"$ swiftkit {shlex.join(argv)} [--dry_run]", flush=True)
        plan = estimate(argv)
        result = measure(argv, out)
        est = plan["memory"]["peak_bytes"] / 2**20
        rows.append((name, est, result["peak_rss_mb"], plan["memory"]["batch"], result["train_tokens_per_s"]))
        print(f"  estimate {est:.1f} MiB ({plan['memory']['peak_stage']}), measured {result['peak_rss_mb']:.1f} MiB, "
              f"ratio {est / result['peak_rss_mb']:.3f}", flush=True)
        print("  parts (MiB): " + ", ".join(f"{k} {v / 2**20:.1f}" for k, v in plan["memory"]["parts"].items()),
              flush=True)
    print(f"\n{'config':<10}{'estimate MiB':>14}{'measured MiB':>14}{'ratio':>8}{'tokens/s':>10}  largest batch")
    for name, est, measured, batch, speed in rows:
        print(f"{name:<10}{est:>14.1f}{measured:>14.1f}{est / measured:>8.3f}{speed:>10.1f}  "
              f"{batch['rows']} x {batch['width']} tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
