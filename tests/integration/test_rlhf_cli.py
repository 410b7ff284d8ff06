"""`swiftkit rlhf` end to end on tiny random models: each method moves its own signal the right way.

The signal is checked twice where it can be: in what the trainer logged (train_result.json
``signals``), and independently, by loading the written checkpoint with plain transformers + peft
and scoring the training pairs without swiftkit or TRL.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from hosts import HOST, templates

from swiftkit.cli.main import main

PROMPTS = ["Say something nice", "Greet me", "How are you today?", "Tell me about the sea", "Any advice?",
           "What do you think of me?", "Describe the weather", "Give me a compliment"]
GOOD = ["Thank you, you are great and kind!", "Hello friend, welcome!", "I am well, thank you kindly.",
        "The sea is calm and lovely.", "Be kind and patient.", "You are thoughtful and kind.",
        "Sunny and warm, a lovely day.", "You are wonderful!"]
BAD = ["Go away.", "No.", "Bad, leave me alone.", "Whatever, it is wet.", "Stop asking.", "Not much.",
       "Bad weather, go away.", "No way."]


def pair_rows() -> list[dict]:
    """Preference pairs in the three common shapes."""
    rows = []
    for i, (p, good, bad) in enumerate(zip(PROMPTS, GOOD, BAD)):
        if i % 3 == 0:
            rows.append({"prompt": p, "chosen": good, "rejected": bad})
        elif i % 3 == 1:
            rows.append({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": good}],
                         "rejected_response": bad})
        else:
            user = {"role": "user", "content": p}
            rows.append({"chosen": [user, {"role": "assistant", "content": good}],
                         "rejected": [user, {"role": "assistant", "content": bad}]})
    return rows


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def run_rlhf(model_dir, data, out, method, *extra) -> Path:
    argv = ["rlhf", "--rlhf_type", method, "--model", str(model_dir), "--dataset", str(data),
            "--output_dir", str(out), "--per_device_train_batch_size", "4", "--learning_rate", "5e-3",
            "--report_to", "none", "--logging_steps", "1", "--lora_dropout", "0", *extra]
    assert main(argv) == 0
    return sorted(Path(out).glob("v*-*"))[-1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sequence_logp(model, tok, prompt: str, reply: str) -> float:
    """Summed log-prob of the reply (through its end-of-turn token) after the chat prompt, with
    the tokenizer's own chat template: no swiftkit code involved."""
    msgs = [{"role": "user", "content": prompt}]
    prompt_ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)["input_ids"]
    full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": reply}], tokenize=True)["input_ids"]
    assert full[:len(prompt_ids)] == prompt_ids
    end = full.index(tok.convert_tokens_to_ids("<|im_end|>"), len(prompt_ids)) + 1
    ids = torch.tensor([full[:end]])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float()
    logps = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]
    return float(logps[len(prompt_ids) - 1:].sum())


def mean_margin(model, tok) -> float:
    return sum(sequence_logp(model, tok, p, g) - sequence_logp(model, tok, p, b)
               for p, g, b in zip(PROMPTS, GOOD, BAD)) / len(PROMPTS)


def load_policy(model_dir, ckpt=None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    if ckpt is not None:
        model = PeftModel.from_pretrained(model, str(ckpt)).eval()
    return model, AutoTokenizer.from_pretrained(str(model_dir))


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir("llama", "chatml")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", pair_rows())


@pytest.mark.parametrize("method", ["dpo", "orpo", "simpo", "cpo"])
def test_pair_methods_widen_the_chosen_over_rejected_margin(method, model_dir, pairs, tmp_path):
    # One batch holds every pair, so the logged values of successive steps are comparable.
    run = run_rlhf(model_dir, pairs, tmp_path / "out", method, "--max_steps", "8", "--save_steps", "8",
                   "--per_device_train_batch_size", "8")
    result = json.loads((run / "train_result.json").read_text())
    margins = result["signals"]["rewards/margins"]
    assert margins["last"] > margins["first"], margins
    if method == "dpo":  # the policy starts as its reference: the implicit reward margin starts at 0
        assert abs(margins["first"]) < 1e-4
    assert result["rlhf_type"] == method and result["global_step"] == 8 and result["train_tokens_per_s"] > 0
    # Independent of swiftkit and TRL: the checkpoint, loaded with peft, prefers the chosen replies more.
    base, tok = load_policy(model_dir)
    before = mean_margin(base, tok)
    after = mean_margin(load_policy(model_dir, run / "checkpoint-8")[0], tok)
    assert after > before + 0.5, (before, after)
    # Outputs like sft: args.json (command rlhf), manifest, logs, plots, adapter checkpoint with args.json.
    args = json.loads((run / "args.json").read_text())
    assert args["command"] == "rlhf" and args["rlhf_type"] == method
    assert json.loads((run / "manifest.json").read_text())["num_train_rows"] == len(PROMPTS)
    logs = read_jsonl(run / "logging.jsonl")
    assert [r["step"] for r in logs if "rewards/margins" in r] == list(range(1, 9))
    for png in ("loss.png", "rewards.png", "margins.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG", png
    assert json.loads((run / "checkpoint-8" / "args.json").read_text()) == args
    assert not (run / "checkpoint-8" / "ref").exists()


def test_kto_separates_desirable_from_undesirable(model_dir, tmp_path):
    rows = [{"prompt": p, "completion": g, "label": True} for p, g in zip(PROMPTS, GOOD)]
    rows += [{"prompt": p, "completion": b, "label": 0} for p, b in zip(PROMPTS, BAD)]
    data = write_jsonl(tmp_path / "kto.jsonl", rows)
    run = run_rlhf(model_dir, data, tmp_path / "out", "kto", "--max_steps", "8", "--save_steps", "8",
                   "--per_device_train_batch_size", "8")
    signals = json.loads((run / "train_result.json").read_text())["signals"]
    assert signals["rewards/margins"]["last"] > signals["rewards/margins"]["first"] + 0.1, signals
    assert signals["rewards/chosen"]["last"] > 0 > signals["rewards/rejected"]["last"]
    base, tok = load_policy(model_dir)
    assert mean_margin(load_policy(model_dir, run / "checkpoint-8")[0], tok) > mean_margin(base, tok) + 0.5


def test_kto_reads_preference_pairs_as_two_labelled_rows(model_dir, pairs, tmp_path):
    run = run_rlhf(model_dir, pairs, tmp_path / "out", "kto", "--max_steps", "2")
    assert json.loads((run / "manifest.json").read_text())["num_train_rows"] == 2 * len(PROMPTS)


def score_pairs(model, tok) -> list[float]:
    """chosen minus rejected reward-model score per pair, through the tokenizer's chat template."""
    out = []
    for p, good, bad in zip(PROMPTS, GOOD, BAD):
        scores = []
        for reply in (good, bad):
            msgs = [{"role": "user", "content": p}, {"role": "assistant", "content": reply}]
            ids = tok.apply_chat_template(msgs, tokenize=True)["input_ids"]
            with torch.no_grad():
                scores.append(float(model(torch.tensor([ids])).logits[0, 0]))
        out.append(scores[0] - scores[1])
    return out


def test_reward_model_learns_to_rank_pairs_and_loads_in_plain_transformers(model_dir, pairs, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = run_rlhf(model_dir, pairs, tmp_path / "out", "rm", "--max_steps", "10", "--save_steps", "10")
    signals = json.loads((run / "train_result.json").read_text())["signals"]
    assert signals["margin"]["last"] > signals["margin"]["first"]
    tok = AutoTokenizer.from_pretrained(str(model_dir))

    def load(ckpt=None):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1).eval()
        model.config.pad_token_id = tok.pad_token_id
        return model if ckpt is None else PeftModel.from_pretrained(model, str(ckpt)).eval()

    before, after = score_pairs(load(), tok), score_pairs(load(run / "checkpoint-10"), tok)
    acc_before = sum(m > 0 for m in before) / len(before)
    acc_after = sum(m > 0 for m in after) / len(after)
    assert acc_after == 1.0 and acc_after >= acc_before
    assert sum(after) / len(after) > sum(before) / len(before) + 0.5
    assert (run / "margins.png").is_file()


@pytest.mark.parametrize("precompute", [False, True])
def test_full_fine_tuning_dpo_against_the_starting_weights(precompute, model_dir, pairs, tmp_path):
    """Full training: the reference is a frozen copy, or (--precompute_ref_log_probs) the starting
    weights score every row once and no copy is kept; either way the margin starts at 0 and grows."""
    run = run_rlhf(model_dir, pairs, tmp_path / "out", "dpo", "--train_type", "full", "--max_steps", "3",
                   "--learning_rate", "1e-3", "--save_steps", "3", "--per_device_train_batch_size", "8",
                   "--precompute_ref_log_probs", str(precompute).lower())
    margins = json.loads((run / "train_result.json").read_text())["signals"]["rewards/margins"]
    assert abs(margins["first"]) < 1e-4 and margins["last"] > margins["first"]
    assert (run / "checkpoint-3" / "model.safetensors").is_file()


def test_precomputed_reference_keeps_no_copy(model_dir, pairs, tmp_path):
    from swiftkit.config import RlhfConfig
    from swiftkit.recipes.rlhf import RlhfRecipe

    cfg = RlhfConfig.from_flat(dict(rlhf_type="dpo", model=str(model_dir), dataset=[str(pairs)],
                                        output_dir=str(tmp_path / "out"), train_type="full", max_steps=1,
                                        report_to=["none"], precompute_ref_log_probs=True))
    recipe = RlhfRecipe(cfg, HOST)
    recipe.setup()
    assert recipe.extra.reference is None and recipe.trainer.ref_model is None
    assert "ref_chosen_logps" in recipe.trainer.train_dataset.column_names


def test_dpo_resumes_from_its_checkpoint(model_dir, pairs, tmp_path):
    run = run_rlhf(model_dir, pairs, tmp_path / "out", "dpo", "--max_steps", "4", "--save_steps", "2")
    main(["rlhf", "--rlhf_type", "dpo", "--dataset", str(pairs), "--max_steps", "6", "--save_steps", "2",
          "--per_device_train_batch_size", "4", "--learning_rate", "5e-3", "--report_to", "none",
          "--logging_steps", "1", "--lora_dropout", "0", "--resume_from_checkpoint", str(run / "checkpoint-4")])
    steps = [r["step"] for r in read_jsonl(run / "logging.jsonl") if "rewards/margins" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (run / "checkpoint-6" / "adapter_model.safetensors").is_file()


def test_dpo_prompt_ids_are_the_serving_prompt(model_dir, pairs, tmp_path, capsys):
    """What the trainer sees as the prompt is what `apply_chat_template(add_generation_prompt=True)`
    (the server's prompt) gives, for every row shape."""
    from transformers import AutoTokenizer

    from swiftkit.data import load_rows
    from swiftkit.data.alignment import to_preference_row
    from swiftkit.data.encode_alignment import encode_pair
    from swiftkit.templates import get_template

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    template = get_template(tok, system="Be kind.", registry=templates())
    for row in load_rows([str(pairs)], registries=HOST.registries, convert=to_preference_row):
        enc = encode_pair(template, row)
        prompt = [{"role": "system", "content": "Be kind."}, *row["messages"][:-1]]
        assert enc["prompt_ids"] == tok.apply_chat_template(prompt, add_generation_prompt=True,
                                                            tokenize=True)["input_ids"]
        end = tok.convert_tokens_to_ids("<|im_end|>")
        assert enc["chosen_ids"][-1] == end and enc["rejected_ids"][-1] == end
        assert tok.decode(enc["rejected_ids"][:-1]) == row["rejected_response"]


@pytest.mark.parametrize("method,rows,message", [
    ("dpo", [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}],
     "not a preference pair"),
    ("kto", [{"prompt": "hi", "completion": "yo"}], "KTO rows need a 'label'"),
    ("kto", [{"prompt": "hi", "completion": "yo", "label": "yes"}], "'label' must be true or false"),
    ("dpo", [{"prompt": "hi", "chosen": "same", "rejected": "same"}], "identical"),
])
def test_bad_rows_stop_before_anything_is_written(method, rows, message, model_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "bad.jsonl", pair_rows()[:2] + rows)
    rc = main(["rlhf", "--rlhf_type", method, "--model", str(model_dir), "--dataset", str(data),
               "--output_dir", str(tmp_path / "out"), "--per_device_train_batch_size", "2"])
    err = capsys.readouterr().err
    assert rc != 0 and message in err and "bad.jsonl:3" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,message", [
    (["--rlhf_type", "dpoo"], "did you mean 'dpo'"),
    (["--rlhf_type", "ppo"], "--rlhf_type ppo needs --reward_model"),
    (["--rlhf_type", "grpo"], "--rlhf_type grpo needs --reward_funcs"),
    (["--rlhf_type", "kto", "--per_device_train_batch_size", "1"], "must be >= 2"),
    (["--rlhf_type", "grpo", "--reward_funcs", "format", "--num_generations", "3",
      "--per_device_train_batch_size", "4"], "must be a multiple of it"),
    (["--rlhf_type", "dpo", "--reward_funcs", "format"], "are for --rlhf_type grpo"),
    (["--rlhf_type", "orpo", "--ref_model", "x"], "uses no reference model"),
    (["--rlhf_type", "dpo", "--dpo_loss_type", "sigmod"], "did you mean 'sigmoid'"),
    (["--rlhf_type", "grpo", "--reward_funcs", "length", "--grpo_loss_type", "dr_grp"], "did you mean 'dr_grpo'"),
    (["--rlhf_type", "dpo", "--packing", "true"], "drop --packing"),
    (["--rlhf_type", "ppo", "--reward_model", "rm", "--split_dataset_ratio", "0.1"], "does not evaluate"),
    (["--rlhf_type", "dpo", "--loss_type", "focal"], "unknown --loss_type 'focal' for --rlhf_type dpo"),
    (["--rlhf_type", "orpo", "--loss_type", "sigmoid"], "--rlhf_type orpo has one loss"),
])
def test_bad_flags_are_one_clear_error(flags, message, model_dir, pairs, tmp_path, capsys):
    rc = main(["rlhf", "--model", str(model_dir), "--dataset", str(pairs), "--output_dir", str(tmp_path / "out"),
               *flags])
    err = capsys.readouterr().err
    assert rc != 0 and message in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


REWARD_PLUGIN = '''
from swiftkit import hookimpl


def low_ids(prompts, completions, completion_ids=None, **columns):
    """Share of reply tokens whose id is below 128 (a quarter of the tiny vocabulary)."""
    return [sum(i < 128 for i in ids) / max(len(ids), 1) for ids in completion_ids]


def saw_columns(prompts, completions, solution=None, level=None, **columns):
    """Checks that every extra dataset column reaches the reward, per completion."""
    assert len(solution) == len(level) == len(completions)
    assert all(str(lv) == s for lv, s in zip(level, solution))
    return [0.0] * len(completions)


@hookimpl
def swiftkit_register_reward_funcs(registry):
    registry.register("low_ids", low_ids, source="test")
    registry.register("saw_columns", saw_columns, source="test")
'''


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grpo")
    (folder / "rewards.py").write_text(REWARD_PLUGIN)
    rows = [{"query": f"Question number {i}: what next?", "solution": str(i), "level": i} for i in range(16)]
    return write_jsonl(folder / "prompts.jsonl", rows), folder / "rewards.py"


def test_grpo_raises_a_verifiable_reward(model_dir, prompts, tmp_path):
    data, plugin = prompts
    run = run_rlhf(model_dir, data, tmp_path / "out", "grpo", "--plugins", str(plugin), "--reward_funcs", "low_ids",
                   "--train_type", "full", "--max_steps", "40", "--per_device_train_batch_size", "8",
                   "--num_generations", "4", "--max_completion_length", "8", "--save_steps", "40")
    logs = [r for r in read_jsonl(run / "logging.jsonl") if "reward" in r]
    rewards = [r["reward"] for r in logs]
    assert len(rewards) == 40 and all(0 <= x <= 1 for x in rewards)
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert last > first + 0.04, (first, last)
    assert logs[0]["kl"] == 0 and all(r["kl"] >= 0 for r in logs) and logs[-1]["kl"] > 0
    assert all(r["rewards/low_ids/mean"] == r["reward"] for r in logs)
    for png in ("loss.png", "rewards.png", "kl.png"):
        assert (run / png).is_file(), png


def test_grpo_builtin_rewards_weights_and_extra_columns(model_dir, prompts, tmp_path):
    data, plugin = prompts
    run = run_rlhf(model_dir, data, tmp_path / "out", "grpo", "--plugins", str(plugin), "--reward_funcs",
                   "accuracy", "format", "length", "saw_columns", "--reward_weights", "1", "0.5", "0.2", "1",
                   "--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "2",
                   "--max_completion_length", "8")
    logs = [r for r in read_jsonl(run / "logging.jsonl") if "reward" in r]
    for name in ("accuracy", "format", "length", "saw_columns"):
        assert f"rewards/{name}/mean" in logs[0], logs[0]
    first = logs[0]
    # A random tiny model is neither accurate nor well formed; length 8 is at the limit: penalty -1.
    assert first["rewards/accuracy/mean"] == 0 and first["rewards/format/mean"] == 0
    assert first["rewards/length/mean"] < 0
    assert first["reward"] == pytest.approx(0.2 * first["rewards/length/mean"], abs=1e-6)


def test_an_unknown_reward_fails_before_weights_load(model_dir, prompts, tmp_path, capsys):
    data, _ = prompts
    rc = main(["rlhf", "--rlhf_type", "grpo", "--model", str(model_dir), "--dataset", str(data),
               "--reward_funcs", "acuracy", "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and "did you mean 'accuracy'" in err and "Loading weights" not in err, err
    assert not (tmp_path / "out").exists()


def test_ppo_with_the_reward_model_of_an_rm_run(model_dir, pairs, prompts, tmp_path):
    rm_run = run_rlhf(model_dir, pairs, tmp_path / "rm", "rm", "--max_steps", "4")
    data, _ = prompts
    run = run_rlhf(model_dir, data, tmp_path / "ppo", "ppo", "--reward_model", str(rm_run), "--max_steps", "8",
                   "--max_completion_length", "8", "--learning_rate", "1e-3", "--save_steps", "4")
    logs = [r for r in read_jsonl(run / "logging.jsonl") if "objective/kl" in r]
    assert [r["step"] for r in logs] == list(range(1, 9))
    names = ("objective/scores", "objective/kl", "objective/rlhf_reward", "loss/policy", "loss/value",
             "policy/clipfrac", "policy/entropy", "val/ratio")
    assert all(all(math.isfinite(r[n]) for n in names) for r in logs)
    assert abs(logs[0]["objective/kl"]) < 1e-4  # the first rollout's policy is its reference
    ckpt = run / "checkpoint-8"
    assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / "value_model" / "config.json").is_file()
    for png in ("rewards.png", "kl.png"):
        assert (run / png).is_file()
    signals = json.loads((run / "train_result.json").read_text())["signals"]
    assert set(signals) >= {"objective/scores", "objective/kl", "objective/rlhf_reward"}


@pytest.mark.parametrize("method", ["dpo", "kto", "grpo"])
def test_lora_reference_is_the_base_with_adapters_off_not_a_copy(method, model_dir, pairs, prompts, tmp_path):
    """Under LoRA no reference model is loaded: the trainer switches the adapters off, and what it
    computes then equals the freshly loaded base model. Under full training the reference is a
    frozen copy that stays equal to the starting weights."""
    import swiftkit
    from swiftkit.config import RlhfConfig
    from swiftkit.recipes.rlhf import RlhfRecipe

    assert callable(swiftkit.rlhf)
    data = prompts[0] if method == "grpo" else pairs
    extra = {"reward_funcs": ["length"], "num_generations": 2} if method == "grpo" else {}
    cfg = RlhfConfig.from_flat(dict(rlhf_type=method, model=str(model_dir), dataset=[str(data)],
                                        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4,
                                        max_steps=1, report_to=["none"], lora_dropout=0.0, **extra))
    recipe = RlhfRecipe(cfg, HOST)
    recipe.setup()
    trainer = recipe.trainer
    assert recipe.extra.reference is None and getattr(trainer, "ref_model", None) is None
    assert list(trainer.model.peft_config) == ["default"]  # no reference adapter copy either
    base, _ = load_policy(model_dir)
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    with torch.no_grad(), trainer.model.disable_adapter():
        assert torch.allclose(trainer.model(ids).logits, base(ids).logits, atol=1e-5)

    full = RlhfRecipe(dataclasses.replace(cfg, tuner=dataclasses.replace(cfg.tuner, train_type="full")), HOST)
    full.setup()
    ref = full.trainer.ref_model
    assert ref is not None and ref is not full.trainer.model
    assert not any(p.requires_grad for p in ref.parameters())
    with torch.no_grad():
        assert torch.allclose(ref(ids).logits, base(ids).logits, atol=1e-5)


@pytest.mark.parametrize("val", [False, True])
def test_token_counts_cover_exactly_the_batches_trained_on(val, model_dir, tmp_path):
    """8 identical pairs, batches of 2, 3 steps: 6 pairs were trained on, although the data loader
    builds a 4th batch ahead (and evaluation batches pass through the same collator)."""
    from transformers import AutoTokenizer

    from swiftkit.data.alignment import to_preference_row
    from swiftkit.data.encode_alignment import encode_pair, real_tokens
    from swiftkit.templates import get_template

    row = {"prompt": PROMPTS[0], "chosen": GOOD[0], "rejected": BAD[0]}
    data = write_jsonl(tmp_path / "same.jsonl", [row] * 8)
    per_pair = real_tokens("dpo", [encode_pair(get_template(AutoTokenizer.from_pretrained(str(model_dir)), registry=templates()),
                                               to_preference_row(row))])
    extra = ["--val_dataset", str(data), "--eval_steps", "1"] if val else []
    run = run_rlhf(model_dir, data, tmp_path / "out", "dpo", "--max_steps", "3", "--per_device_train_batch_size",
                   "2", *extra)
    result = json.loads((run / "train_result.json").read_text())
    assert result["train_tokens"] == 6 * per_pair
    logged = [r["train_tokens"] for r in read_jsonl(run / "logging.jsonl") if "loss" in r]
    assert logged == [2 * per_pair, 4 * per_pair, 6 * per_pair]


@pytest.fixture(scope="module")
def sft_run(model_dir, pairs, tmp_path_factory):
    """A LoRA SFT run on the chosen replies (the usual step before alignment)."""
    sft_rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": g}]}
                for p, g in zip(PROMPTS, GOOD)]
    folder = tmp_path_factory.mktemp("sft")
    data = write_jsonl(folder / "sft.jsonl", sft_rows)
    assert main(["sft", "--model", str(model_dir), "--dataset", str(data), "--output_dir", str(folder / "out"),
                 "--max_steps", "4", "--learning_rate", "1e-2", "--lora_rank", "4", "--report_to", "none",
                 "--per_device_train_batch_size", "4", "--lora_dropout", "0"]) == 0
    return next((folder / "out").glob("v0-*"))


@pytest.mark.parametrize("method,data_kind", [("dpo", "pairs"), ("kto", "pairs"), ("grpo", "prompts"),
                                              ("ppo", "prompts")])
def test_alignment_continues_an_sft_adapter_which_is_also_the_reference(method, data_kind, sft_run, model_dir,
                                                                         pairs, prompts, tmp_path):
    """--adapters SFT_RUN: no --model needed (args.json names it); the SFT adapter keeps training
    (same rank), and the reference is the SFT policy, so the first step's KL / margin is 0 although
    the SFT adapter is far from the base."""
    from peft import PeftModel
    from safetensors.torch import load_file

    extra = {
        "dpo": [], "kto": [],
        "grpo": ["--reward_funcs", "length", "--num_generations", "2", "--max_completion_length", "8"],
        "ppo": ["--reward_model", str(run_rlhf(model_dir, pairs, tmp_path / "rm", "rm", "--max_steps", "2")),
                "--max_completion_length", "8"],
    }[method]
    data = pairs if data_kind == "pairs" else prompts[0]
    argv = ["rlhf", "--rlhf_type", method, "--adapters", str(sft_run), "--dataset", str(data), "--output_dir",
            str(tmp_path / "out"), "--per_device_train_batch_size", "4", "--learning_rate", "5e-3", "--report_to",
            "none", "--logging_steps", "1", "--max_steps", "2", *extra]
    assert main(argv) == 0
    run = next((tmp_path / "out").glob("v0-*"))
    args = json.loads((run / "args.json").read_text())
    assert args["model"] == str(model_dir) and args["adapters"] == [str(sft_run)]
    first = read_jsonl(run / "logging.jsonl")[0]
    key = {"dpo": "rewards/margins", "kto": "kl", "grpo": "kl", "ppo": "objective/kl"}[method]
    assert abs(first[key]) < 1e-4, first
    ckpt = run / "checkpoint-2"
    assert json.loads((ckpt / "adapter_config.json").read_text())["r"] == 4
    start = load_file(sft_run / "checkpoint-4" / "adapter_model.safetensors")
    after = load_file(ckpt / "adapter_model.safetensors")
    assert start.keys() == after.keys() and any(not torch.equal(start[k], after[k]) for k in start)
    base, _ = load_policy(model_dir)
    PeftModel.from_pretrained(base, str(ckpt))  # loads with plain peft on the base model


def test_adapters_start_from_the_sft_policy_not_the_base(sft_run, model_dir, pairs, tmp_path):
    """Control for the test above: with the SFT adapter merged away (the reference = the base), the
    first DPO margin is not 0, so a 0 there really shows the SFT policy is the reference."""
    from swiftkit.config import RlhfConfig
    from swiftkit.recipes.rlhf import RlhfRecipe

    cfg = RlhfConfig.from_flat(dict(rlhf_type="dpo", adapters=[str(sft_run)], dataset=[str(pairs)],
                                        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8,
                                        max_steps=1, report_to=["none"]))
    recipe = RlhfRecipe(cfg, HOST)
    recipe.setup()
    model = recipe.trainer.model
    assert list(model.peft_config) == ["default", "ref"]
    batch = recipe.trainer.data_collator([recipe.train_data[i] for i in range(len(recipe.train_data))])
    with torch.no_grad():
        policy = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        with model.disable_adapter():
            base = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.allclose(policy, base, atol=1e-3)  # the SFT adapter moved the policy away from the base


@pytest.mark.parametrize("flags,message", [
    (["--rlhf_type", "rm"], "cannot start it"),
    (["--rlhf_type", "dpo", "--train_type", "full"], "continues training a LoRA adapter"),
])
def test_bad_adapter_starts(flags, message, sft_run, pairs, tmp_path, capsys):
    rc = main(["rlhf", "--adapters", str(sft_run), "--dataset", str(pairs), "--output_dir", str(tmp_path / "o"),
               *flags])
    err = capsys.readouterr().err
    assert rc != 0 and message in err, err


def test_a_reward_model_folder_without_a_model_is_one_clear_error(model_dir, prompts, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["rlhf", "--rlhf_type", "ppo", "--model", str(model_dir), "--dataset", str(prompts[0]),
               "--reward_model", str(tmp_path / "empty"), "--per_device_train_batch_size", "4",
               "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc != 0 and "--reward_model" in err and "nor any checkpoint-N directory" in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
