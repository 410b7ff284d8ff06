"""Training and inference flags end to end on tiny models: --bf16/--fp16, --attn_impl,
--gradient_checkpointing_kwargs, --dataloader_drop_last, --save_only_model, --save_strategy,
--load_data_args, --enable_thinking and rlhf's --loss_type."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hosts import HOST
from test_rlhf_cli import pair_rows
from test_sft_cli import read_jsonl, run_sft, write_jsonl

from swiftkit.cli.args import config_and_host
from swiftkit.cli.main import main
from swiftkit.commands import COMMANDS
from swiftkit.config import InferConfig
from swiftkit.inference import load_for_inference
from swiftkit.recipes.rlhf import RlhfRecipe
from swiftkit.recipes.sft import SftRecipe

COMMON = ["--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--report_to", "none",
          "--logging_steps", "1"]
# Eight conversations with distinct replies, so a reply tells which row it came from.
CHATS = [{"messages": [{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"},
                       {"role": "assistant", "content": f"The answer is {2 * i}."}]} for i in range(8)]


@pytest.fixture
def model_dir(tiny_model_dir):
    return tiny_model_dir("llama", "chatml")


@pytest.fixture
def chats(tmp_path):
    return write_jsonl(tmp_path / "chats.jsonl", CHATS)


def recipe(argv, command="sft"):
    """The recipe of ``swiftkit COMMAND ARGV``, set up (model loaded, trainer built) but not run."""
    cfg, host = config_and_host(COMMANDS[command], [str(a) for a in argv])
    made = (SftRecipe if command == "sft" else RlhfRecipe)(cfg, host)
    made.setup()
    return made


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    return err[-1]


# -- --bf16 / --fp16 ------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU; the machine has a CUDA GPU")
def test_bf16_runs_the_forward_in_bfloat16_on_the_cpu(model_dir, chats, tmp_path, capfd):
    from swiftkit.train.precision import cpu_native_bf16

    made = recipe(["--model", model_dir, "--dataset", chats, "--output_dir", tmp_path / "out", "--max_steps", "2",
                   *COMMON, "--bf16", "true"])
    # a CPU without bfloat16 instructions emulates them: the run says so before it starts
    assert ("this CPU has no bfloat16 instructions" in capfd.readouterr().err) is (cpu_native_bf16() is False)
    args = made.trainer.args
    assert args.bf16 and args.use_cpu and made.trainer.accelerator.mixed_precision == "bf16"
    seen = []
    layer = made.model.get_base_model().model.layers[0].mlp.down_proj.base_layer
    layer.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    result = made.run()
    assert result["global_step"] == 2 and torch.isfinite(torch.tensor(result["train_loss"]))
    assert seen and set(seen) == {torch.bfloat16}  # autocast: the matmuls ran in bfloat16 ...
    assert layer.weight.dtype == torch.float32  # ... the weights stayed in --torch_dtype
    assert json.loads((Path(result["run_dir"]) / "args.json").read_text())["bf16"] is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU; the machine has a CUDA GPU")
def test_fp16_on_the_cpu_is_one_line_before_any_weights_load(model_dir, chats, tmp_path, capsys, count_weight_loads):
    # accelerate leaves fp16 off on the CPU without a word: the run would silently train in float32
    assert main(["sft", "--model", str(model_dir), "--dataset", str(chats), "--output_dir", str(tmp_path / "out"),
                 "--fp16", "true"]) == 2
    assert one_line_error(capsys).endswith("--fp16: the trainer (accelerate) does not run float16 mixed precision on "
                                           "the CPU and would train in float32; use --bf16 true on the CPU (float16 "
                                           "needs a CUDA GPU)")
    assert count_weight_loads == [] and not (tmp_path / "out").exists()


def test_without_mixed_precision_the_cpu_computes_in_float32(model_dir, chats, tmp_path):
    made = recipe(["--model", model_dir, "--dataset", chats, "--output_dir", tmp_path / "out", "--max_steps", "1",
                   *COMMON])
    assert not made.trainer.args.bf16 and not made.trainer.args.use_cpu
    assert made.trainer.accelerator.mixed_precision == "no"


# -- --attn_impl ----------------------------------------------------------------------------------


def test_attn_impl_reaches_the_trained_and_the_inference_model(model_dir, chats, tmp_path):
    made = recipe(["--model", model_dir, "--dataset", chats, "--output_dir", tmp_path / "out", "--max_steps", "1",
                   *COMMON, "--attn_impl", "eager"])
    assert made.model.get_base_model().config._attn_implementation == "eager"
    ckpt = Path(made.run()["last_checkpoint"])
    for impl in ("eager", "sdpa"):
        cfg = InferConfig.from_flat({"adapters": [str(ckpt)], "attn_impl": impl})
        model, _, _ = load_for_inference(cfg, registries=HOST.registries)
        assert model.get_base_model().config._attn_implementation == impl


@pytest.fixture
def count_weight_loads(monkeypatch):
    """How often transformers loads weights (the real loader runs; the count is kept)."""
    from transformers import AutoModelForCausalLM

    calls = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        calls.append(args[0] if args else kwargs)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    return calls


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")
@pytest.mark.parametrize("command", ["sft", "infer", "export"])
def test_flash_attention_without_cuda_is_one_line_before_any_weights_load(
        command, model_dir, chats, tmp_path, capsys, count_weight_loads, trained):
    argv = {"sft": ["sft", "--model", model_dir, "--dataset", chats, "--output_dir", tmp_path / "out"],
            "infer": ["infer", "--adapters", trained, "--val_dataset", chats],
            "export": ["export", "--adapters", trained, "--output_dir", tmp_path / "merged"]}[command]
    assert main([str(a) for a in argv] + ["--attn_impl", "flash_attn"]) == 2
    assert one_line_error(capsys).endswith("--attn_impl flash_attention_2 needs a CUDA GPU and this machine has none; "
                                           "use --attn_impl sdpa (the default where the model supports it) or eager")
    assert count_weight_loads == [] and not (tmp_path / "out").exists() and not (tmp_path / "merged").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")
def test_liger_without_cuda_is_one_line_before_any_weights_load(model_dir, chats, tmp_path, capsys, count_weight_loads):
    argv = ["sft", "--model", str(model_dir), "--dataset", str(chats), "--output_dir", str(tmp_path / "out"),
            "--use_liger_kernel", "true"]
    assert main(argv) == 2
    assert one_line_error(capsys).endswith("--use_liger_kernel needs a CUDA GPU (Liger's kernels are Triton kernels) "
                                           "and this machine has none; train without it (the LM head already runs "
                                           "only where a label is)")
    assert count_weight_loads == [] and not (tmp_path / "out").exists()


# -- --gradient_checkpointing_kwargs ---------------------------------------------------------------


def test_gradient_checkpointing_kwargs_reach_torch_checkpoint(model_dir, chats, tmp_path, capsys):
    layers = lambda made: made.model.get_base_model().model.layers  # noqa: E731
    made = recipe(["--model", model_dir, "--dataset", chats, "--output_dir", tmp_path / "a", "--max_steps", "1",
                   *COMMON, "--gradient_checkpointing", "true", "--gradient_checkpointing_kwargs",
                   '{"use_reentrant": true}'])
    assert all(layer.gradient_checkpointing for layer in layers(made))
    assert layers(made)[0]._gradient_checkpointing_func.keywords == {"use_reentrant": True}
    assert made.run()["global_step"] == 1
    yaml_file = tmp_path / "c.yaml"  # a YAML config may give the options as a mapping; default use_reentrant false
    yaml_file.write_text(f"model: {model_dir}\ndataset: {chats}\noutput_dir: {tmp_path / 'b'}\nmax_steps: 1\n"
                         "gradient_checkpointing: true\ngradient_checkpointing_kwargs: {preserve_rng_state: false}\n")
    made = recipe([yaml_file, *COMMON])
    assert layers(made)[0]._gradient_checkpointing_func.keywords == {"use_reentrant": False,
                                                                     "preserve_rng_state": False}
    out = ["--output_dir", str(tmp_path / "c")]
    assert main(["sft", "--model", str(model_dir), "--dataset", str(chats), *out, "--gradient_checkpointing", "true",
                 "--gradient_checkpointing_kwargs", "{use_reentrant: false}"]) == 2
    assert ("--gradient_checkpointing_kwargs is not valid JSON: Expecting property name enclosed in double quotes "
            "(column 2)") in one_line_error(capsys)
    assert main(["sft", "--model", str(model_dir), "--dataset", str(chats), *out,
                 "--gradient_checkpointing_kwargs", '{"use_reentrant": false}']) == 2
    assert one_line_error(capsys).endswith("--gradient_checkpointing_kwargs applies with --gradient_checkpointing true "
                                           "or --recompute_granularity selective/full")
    assert main(["sft", "--model", str(model_dir), "--dataset", str(chats), *out, "--gradient_checkpointing_kwargs",
                 '{"use_reentrant": true}', "--recompute_granularity", "selective"]) == 2
    assert one_line_error(capsys).endswith('--recompute_granularity selective needs "use_reentrant": false')
    assert main(["sft", "--model", str(model_dir), "--dataset", str(chats), *out, "--gradient_checkpointing", "true",
                 "--recompute_granularity", "selective"]) == 2
    assert one_line_error(capsys).endswith("--gradient_checkpointing true means --recompute_granularity full, not "
                                           "selective: give one of the two")
    assert not (tmp_path / "c").exists()


def test_recompute_granularity_reaches_the_layers(model_dir, chats, tmp_path):
    layers = lambda made: made.model.get_base_model().model.layers  # noqa: E731
    base = ["--model", model_dir, "--dataset", chats, "--max_steps", "1", *COMMON]
    default = recipe([*base, "--output_dir", tmp_path / "d"])  # nothing recomputed
    assert not any(layer.gradient_checkpointing for layer in layers(default))
    selective = recipe([*base, "--output_dir", tmp_path / "s", "--recompute_granularity", "selective"])
    assert all(layer.gradient_checkpointing for layer in layers(selective))
    assert "context_fn" in layers(selective)[0]._gradient_checkpointing_func.keywords
    full = recipe([*base, "--output_dir", tmp_path / "f", "--recompute_granularity", "full"])
    assert "context_fn" not in layers(full)[0]._gradient_checkpointing_func.keywords
    for flags in (["--recompute_granularity", "none"], ["--gradient_checkpointing", "false"]):
        made = recipe([*base, "--output_dir", tmp_path / flags[0][2:], *flags])
        assert not any(layer.gradient_checkpointing for layer in layers(made))


# -- --dataloader_drop_last ------------------------------------------------------------------------


@pytest.mark.parametrize("drop_last,steps", [("false", 3), ("true", 2)])
def test_dataloader_drop_last_drops_the_short_last_batch(model_dir, tmp_path, drop_last, steps):
    data = write_jsonl(tmp_path / "five.jsonl", CHATS[:5])  # 5 rows in batches of 2: 2, 2 and 1
    run = run_sft(model_dir, data, tmp_path / "out", "--num_train_epochs", "1", "--dataloader_drop_last", drop_last)
    assert json.loads((run / "train_result.json").read_text())["global_step"] == steps


# -- --save_only_model, --save_strategy ------------------------------------------------------------


def test_save_only_model_checkpoints_hold_weights_and_resuming_says_it_is_not_exact(model_dir, chats, tmp_path,
                                                                                    capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = run_sft(model_dir, chats, tmp_path / "out", "--max_steps", "4", "--save_steps", "2",
                  "--save_only_model", "true")
    for step in (2, 4):
        files = {p.name for p in (run / f"checkpoint-{step}").iterdir()}
        assert {"adapter_model.safetensors", "trainer_state.json", "args.json"} <= files
        assert not files & {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), run / "checkpoint-4")  # plain peft

    shutil.rmtree(run / "checkpoint-4")
    capsys.readouterr()
    assert main(["sft", "--resume_from_checkpoint", str(run), "--dataset", str(chats), *COMMON, "--max_steps", "4",
                 "--save_steps", "2", "--save_only_model", "true"]) == 0
    err = capsys.readouterr().err
    assert ("--resume_from_checkpoint checkpoint-2 holds the weights only (saved with --save_only_model): training "
            "continues from its step with a new optimizer state") in err
    assert (run / "checkpoint-4" / "adapter_model.safetensors").is_file()

    full = run_sft(model_dir, chats, tmp_path / "full", "--max_steps", "2", "--save_steps", "1")
    shutil.rmtree(full / "checkpoint-2")
    capsys.readouterr()
    assert main(["sft", "--resume_from_checkpoint", str(full), "--dataset", str(chats), *COMMON,
                 "--max_steps", "2", "--save_steps", "1"]) == 0
    assert "holds the weights only" not in capsys.readouterr().err  # a full checkpoint resumes exactly


def test_save_strategy_no_saves_only_the_final_model_and_epoch_saves_per_epoch(model_dir, chats, tmp_path):
    run = run_sft(model_dir, chats, tmp_path / "no", "--max_steps", "3", "--save_steps", "1",
                  "--save_strategy", "no")
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-3"]
    assert json.loads((run / "train_result.json").read_text())["last_checkpoint"].endswith("checkpoint-3")
    run = run_sft(model_dir, chats, tmp_path / "epoch", "--num_train_epochs", "2", "--save_strategy", "epoch")
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]  # 8 rows / 2


def test_save_strategy_best_saves_where_the_eval_loss_improves(model_dir, chats, tmp_path):
    run = run_sft(model_dir, chats, tmp_path / "out", "--max_steps", "4", "--split_dataset_ratio", "0.25",
                  "--save_strategy", "best", "--eval_steps", "1")
    losses = {r["step"]: r["eval_loss"] for r in read_jsonl(run / "logging.jsonl") if "eval_loss" in r}
    assert sorted(losses) == [1, 2, 3, 4]
    improved = [s for s in sorted(losses) if losses[s] < min([losses[t] for t in losses if t < s], default=1e9)]
    assert sorted(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*")) == improved


def test_an_eval_strategy_without_eval_data_is_one_line_and_leaves_nothing(model_dir, chats, tmp_path, capsys):
    assert main(["sft", "--model", str(model_dir), "--dataset", str(chats), "--output_dir", str(tmp_path / "out"),
                 "--eval_strategy", "steps"]) == 2
    assert one_line_error(capsys).endswith("--eval_strategy steps evaluates on validation data: pass --val_dataset "
                                           "or --split_dataset_ratio (or --eval_strategy no)")
    assert not (tmp_path / "out").exists()


# -- --load_data_args ------------------------------------------------------------------------------


@pytest.fixture
def split_run(model_dir, chats, tmp_path):
    """A 4-step run holding out 25% of CHATS (checkpoints 2 and 4), and the rows it held out."""
    made = recipe(["--model", model_dir, "--dataset", chats, "--output_dir", tmp_path / "out", "--max_steps", "4",
                   "--save_steps", "2", "--split_dataset_ratio", "0.25", "--data_seed", "5", *COMMON])
    held_out = [row["messages"][-1]["content"] for row in made.rows.val]
    result = made.run()
    return Path(result["run_dir"]), held_out


def test_infer_and_eval_with_load_data_args_answer_the_runs_validation_rows(split_run, tmp_path, capsys):
    run, held_out = split_run
    assert len(held_out) == 2
    out = tmp_path / "replies.jsonl"
    assert main(["infer", "--adapters", str(run), "--load_data_args", "true", "--max_new_tokens", "4",
                 "--result_path", str(out)]) == 0
    assert "--load_data_args: took --dataset" in capsys.readouterr().err
    assert sorted(r["labels"] for r in read_jsonl(out)) == sorted(held_out)

    assert main(["eval", "--adapters", str(run), "--load_data_args", "true", "--max_new_tokens", "4",
                 "--eval_output_dir", str(tmp_path / "ev")]) == 0
    samples = read_jsonl(next((tmp_path / "ev").glob("*/qa/samples.jsonl")))
    assert len(samples) == len(held_out)


def test_load_data_args_is_an_error_when_the_run_held_nothing_out(trained, capsys):
    assert main(["infer", "--adapters", str(trained), "--load_data_args", "true"]) == 2
    assert "held out no validation data (no --val_dataset or --split_dataset_ratio); pass --val_dataset" in \
        one_line_error(capsys)


def test_resume_with_load_data_args_takes_the_runs_data(split_run, model_dir, chats, tmp_path, capsys):
    run, _ = split_run
    full = {r["step"]: r["loss"] for r in read_jsonl(run / "logging.jsonl") if "loss" in r}
    shutil.rmtree(run / "checkpoint-4")
    capsys.readouterr()
    assert main(["sft", "--resume_from_checkpoint", str(run), "--load_data_args", "true", *COMMON,
                 "--max_steps", "4", "--save_steps", "2"]) == 0  # no --dataset
    assert "--load_data_args: took --dataset, --val_dataset, --split_dataset_ratio, --data_seed" in \
        capsys.readouterr().err
    resumed = [r for r in read_jsonl(run / "logging.jsonl") if "loss" in r]
    assert resumed[-1]["step"] == 4 and resumed[-1]["loss"] == pytest.approx(full[4], rel=1e-4)
    args = json.loads((run / "args.json").read_text())
    assert args["dataset"] == [str(chats)] and args["split_dataset_ratio"] == 0.25 and args["data_seed"] == 5


# -- --enable_thinking -----------------------------------------------------------------------------


THINKING_TEMPLATE = (
    "{% set no_think = enable_thinking is defined and not enable_thinking %}"
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' and no_think %}{{ '<think>\n\n</think>\n\n' }}{% endif %}"
    "{{ message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if no_think %}{{ '<think>\n\n</think>\n\n' }}{% endif %}{% endif %}"
)


def test_enable_thinking_is_trained_with_and_inherited_by_inference(model_dir, chats, tmp_path):
    from transformers import AutoTokenizer

    thinking_model = tmp_path / "thinking-model"
    shutil.copytree(model_dir, thinking_model)
    tok = AutoTokenizer.from_pretrained(thinking_model)
    tok.chat_template = THINKING_TEMPLATE
    tok.save_pretrained(thinking_model)

    made = recipe(["--model", thinking_model, "--dataset", chats, "--output_dir", tmp_path / "out",
                   "--max_steps", "1", *COMMON, "--enable_thinking", "false"])
    assert "<think>\n\n</think>\n\n" in made.tokenizer.decode(made.train_data[0]["input_ids"])
    ckpt = Path(made.run()["last_checkpoint"])
    assert json.loads((ckpt / "args.json").read_text())["enable_thinking"] is False

    prompt = [{"role": "user", "content": "Question 1: what is 1 plus 1?"}]
    _, template, _ = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)]}), registries=HOST.registries)
    assert template.chat_kwargs == {"enable_thinking": False}
    assert template.tokenizer.decode(template.encode_prompt(prompt)).endswith("assistant\n<think>\n\n</think>\n\n")
    _, template, _ = load_for_inference(InferConfig.from_flat({"adapters": [str(ckpt)], "enable_thinking": True}),
                                        registries=HOST.registries)
    assert template.chat_kwargs == {"enable_thinking": True}  # a flag given at inference wins
    assert "<think>" not in template.tokenizer.decode(template.encode_prompt(prompt))


# -- rlhf --loss_type ------------------------------------------------------------------------------


def test_rlhf_loss_type_is_the_dpo_variant_trl_trains_with(model_dir, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    made = recipe(["--rlhf_type", "dpo", "--model", model_dir, "--dataset", pairs, "--output_dir", tmp_path / "out",
                   "--max_steps", "1", "--per_device_train_batch_size", "4", "--report_to", "none",
                   "--loss_type", "ipo", "--beta", "0.2"], command="rlhf")
    assert list(made.trainer.args.loss_type) == ["ipo"] and made.trainer.args.beta == 0.2
    result = made.run()
    assert result["global_step"] == 1
    assert json.loads((Path(result["run_dir"]) / "args.json").read_text())["loss_type"] == "ipo"
