"""Quantized artifacts of SmolLM2-135M-Instruct against its full-precision export, side by side on this CPU.

Writes, with `swiftkit export` / `swiftkit quantize`, the fp32 merged model (the baseline) and each format
asked for, then measures each in a fresh process of its own, loaded the way `swiftkit infer --model DIR`
loads it: size on disk, load time, tokens/s of one-at-a-time greedy generation (1 thread), peak RSS, and
perplexity on the held-aside rows of the parity report (the same rows for every format). Ratios are
against the fp32 baseline of the same run. With ``--llama_cpp_python PY`` (an interpreter that has
llama-cpp-python installed) each GGUF also runs through llama.cpp on the same prompt token ids.

    .venv/bin/python benchmarks/quantize_formats.py [--formats fp32 torchao-int8 torchao-int4 gguf-q8_0 gguf-q4_0]
        [--new_tokens 64] [--work DIR] [--llama_cpp_python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from child import peak_rss_mb  # noqa: E402

MODEL = "smollm2-135m-instruct"
FORMATS = {
    "fp32": ["export", "--model", MODEL],
    "torchao-int8": ["quantize", "--model", MODEL, "--quant_method", "torchao", "--quant_bits", "8"],
    "torchao-int4": ["quantize", "--model", MODEL, "--quant_method", "torchao", "--quant_bits", "4",
                     "--group_size", "64"],
    "bnb-nf4": ["quantize", "--model", MODEL, "--quant_method", "bnb", "--quant_bits", "4"],
    "bnb-int8": ["quantize", "--model", MODEL, "--quant_method", "bnb", "--quant_bits", "8"],
    "gguf-f16": ["quantize", "--model", MODEL, "--quant_method", "gguf", "--gguf_type", "f16"],
    "gguf-q8_0": ["quantize", "--model", MODEL, "--quant_method", "gguf", "--gguf_type", "q8_0"],
    "gguf-q4_0": ["quantize", "--model", MODEL, "--quant_method", "gguf", "--gguf_type", "q4_0"],
    "gguf-q4_1": ["quantize", "--model", MODEL, "--quant_method", "gguf", "--gguf_type", "q4_1"],
}
PROMPT = [{"role": "user", "content": "Explain in a few sentences why the sky is blue."}]
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}


def swiftkit(argv: list[str]) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, "-c", "import sys; from swiftkit.cli.main import main; sys.exit(main(sys.argv[1:]))", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"failed: swiftkit {' '.join(argv)}")
    return time.perf_counter() - start


def measure(folder: str, new_tokens: int) -> dict:
    """In this (fresh) process: load ``folder`` as `swiftkit infer --model` does, generate greedily."""
    import torch

    from swiftkit.commands import build_host
    from swiftkit.config import InferConfig
    from swiftkit.inference import load_for_inference

    torch.set_num_threads(1)
    host = build_host([])
    start = time.perf_counter()
    model, template, _ = load_for_inference(InferConfig.from_flat({"model": folder}), registries=host.registries)
    load_s = time.perf_counter() - start
    ids = torch.tensor([template.encode_prompt(PROMPT)])
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        gen_s = time.perf_counter() - start
    made = out.shape[1] - ids.shape[1]
    return {"load_s": load_s, "tokens_per_s": made / gen_s, "peak_rss_mb": peak_rss_mb(),
            "prompt_ids": ids[0].tolist(), "reply": template.decode(out[0, ids.shape[1]:])}


# n_batch=1: llama-cpp-python 0.3.36 built on this machine segfaults evaluating a multi-token prompt on quantized
# GGUFs (the shipped SmolLM2 Q4_1 and a q8_0 made by its own llama_model_quantize alike); one token at a time works.
LLAMA_CPP = """
import json, sys, time
from llama_cpp import Llama
path, ids, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
llm = Llama(model_path=path, n_ctx=512, n_threads=1, n_batch=1, verbose=False)
load_s = time.perf_counter() - start
llm.create_completion(ids, max_tokens=4, temperature=0.0)
start = time.perf_counter()
out = llm.create_completion(ids, max_tokens=n, temperature=0.0, stop=[])
gen_s = time.perf_counter() - start
made = out["usage"]["completion_tokens"]
print(json.dumps({"load_s": load_s, "tokens_per_s": made / gen_s, "made": made, "reply": out["choices"][0]["text"]}))
"""


def llama_cpp(python: str, gguf: Path, ids: list[int], n: int) -> dict:
    proc = subprocess.run([python, "-c", LLAMA_CPP, str(gguf), json.dumps(ids), str(n)], capture_output=True,
                          text=True, env=ENV, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", nargs="+", default=["fp32", "torchao-int8", "torchao-int4", "gguf-q8_0",
                                                         "gguf-q4_0"], choices=list(FORMATS))
    parser.add_argument("--new_tokens", type=int, default=64)
    parser.add_argument("--work", default=None, help="Folder for the artifacts (default: a temporary one).")
    parser.add_argument("--llama_cpp_python", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.new_tokens)))
        return 0

    work = Path(args.work or tempfile.mkdtemp(prefix="swiftkit-quant-bench-"))
    formats = ["fp32", *[f for f in args.formats if f != "fp32"]]
    rows = []
    for name in formats:
        out = work / name
        write_s = 0.0 if out.exists() else swiftkit([*FORMATS[name], "--output_dir", str(out)])
        proc = subprocess.run([sys.executable, __file__, "--child", str(out), "--new_tokens", str(args.new_tokens)],
                              capture_output=True, text=True, env=ENV, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"measuring {name} failed")
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        parity = json.loads((out / "parity.json").read_text())
        weights = sum(p.stat().st_size for p in out.iterdir() if p.suffix in (".safetensors", ".gguf"))
        row = {"format": name, "size_mb": weights / 2**20, "write_s": write_s, **m,
               "ppl": (parity.get("perplexity") or {}).get("artifact"),
               "ppl_source": (parity.get("perplexity") or {}).get("source"),
               "top1": parity["logits"]["top1_agreement"], "max_logit_diff": parity["logits"]["max_abs_diff"]}
        if args.llama_cpp_python and name.startswith("gguf"):
            row["llama_cpp"] = llama_cpp(args.llama_cpp_python, next(out.glob("*.gguf")), m["prompt_ids"],
                                         args.new_tokens)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "prompt_ids"}), file=sys.stderr, flush=True)

    base = rows[0]
    print(f"\nSmolLM2-135M-Instruct, 1 thread, greedy one-at-a-time generation of {args.new_tokens} tokens; "
          f"ratios against fp32 (artifacts in {work})")
    print(f"{'format':14} {'size MiB':>9} {'x':>5} {'load s':>7} {'tok/s':>7} {'x':>5} {'ppl':>7} {'top1':>5} "
          f"{'max|dlogit|':>11} {'peak MiB':>9}  llama.cpp tok/s")
    for r in rows:
        cpp = r.get("llama_cpp")
        cpp_text = "" if cpp is None else (cpp.get("error")
                                           or f"{cpp['tokens_per_s']:.1f} (load {cpp['load_s']:.2f} s)")
        ppl = f"{r['ppl']:.2f}" if r["ppl"] is not None else "-"
        print(f"{r['format']:14} {r['size_mb']:9.1f} {r['size_mb'] / base['size_mb']:5.2f} {r['load_s']:7.2f} "
              f"{r['tokens_per_s']:7.1f} {r['tokens_per_s'] / base['tokens_per_s']:5.2f} {ppl:>7} {r['top1']:5.2f} "
              f"{r['max_logit_diff']:11.3f} {r['peak_rss_mb']:9.0f}  {cpp_text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
