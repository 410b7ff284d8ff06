"""The real SmolLM2-135M-Instruct: the embedded default trains, reloads with plain peft, learns a name.

Marked slow (minutes on a 2-core CPU); `make test` runs them, `pytest -m "not slow"` skips them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hosts import registries

from swiftkit.cli.main import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_sft_checkpoint_loads_with_plain_peft_and_gives_the_same_logits(tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.config import InferConfig
    from swiftkit.inference import load_for_inference

    out = tmp_path / "out"
    assert main(["sft", "--model", "smollm2-135m-instruct", "--dataset", "self-cognition#8",
                 "--model_name", "Nova", "--model_author", "Aurora Lab", "--max_steps", "2",
                 "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--output_dir", str(out),
                 "--report_to", "none"]) == 0
    ckpt = next(out.glob("v0-*")) / "checkpoint-2"
    args = json.loads((ckpt / "args.json").read_text())

    base = AutoModelForCausalLM.from_pretrained(args["model_path"], dtype=torch.float32)
    plain = PeftModel.from_pretrained(base, ckpt).eval()
    tok = AutoTokenizer.from_pretrained(ckpt)
    messages = [{"role": "user", "content": "Who are you?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)["input_ids"]
    ours, template, _ = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=registries())
    assert template.encode_prompt(messages) == ids[0].tolist()
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, ours(input_ids=ids).logits, atol=1e-5)


def test_demo_teaches_the_model_its_new_name(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--max_steps", "20", "--output_dir",
         str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=1200,
    )
    assert "new name used:    before=False after=True" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0


def test_dpo_on_smollm2_widens_the_margin_on_the_shipped_pairs(tmp_path):
    """A short real DPO run (LoRA) on the example preference pairs: the implicit reward margin starts
    at 0 (policy == reference), ends positive, and the adapter loads with plain peft."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    assert main(["rlhf", str(ROOT / "examples" / "rlhf_dpo.yaml"), "--dataset",
                 f"{ROOT / 'examples' / 'data' / 'preference_pairs.jsonl'}#8", "--max_steps", "4",
                 "--per_device_train_batch_size", "4", "--learning_rate", "5e-4", "--output_dir", str(out),
                 "--logging_steps", "1", "--report_to", "none"]) == 0
    run = next(out.glob("v0-*"))
    margins = json.loads((run / "train_result.json").read_text())["signals"]["rewards/margins"]
    assert abs(margins["first"]) < 1e-4 and margins["last"] > margins["first"], margins
    args = json.loads((run / "args.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(args["model_path"])
    PeftModel.from_pretrained(base, run / "checkpoint-4")
