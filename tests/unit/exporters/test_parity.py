"""Parity reports: an artifact loaded back through --model against the source model it was exported from."""

from __future__ import annotations

import json
import shutil

import pytest
from hosts import templates

from swiftkit.exporters.parity import (
    PARITY_CONVERSATIONS,
    ParityError,
    check_artifact,
    raise_for_failures,
    reference,
    summary_lines,
)
from swiftkit.templates import get_template

HELD_ASIDE = [
    [{"role": "user", "content": "Hello! How can I help you today?"},
     {"role": "assistant", "content": "I am an AI assistant trained to answer questions."}],
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris is the capital of France."}],
]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def export_plain(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def record(model, tokenizer, system=None, max_new_tokens=8):
    template = get_template(tokenizer, system=system, registry=templates())
    rows = [template.encode({"messages": m}) for m in HELD_ASIDE]
    return template, reference(model, template, ppl_rows=rows, max_new_tokens=max_new_tokens)


@pytest.fixture
def source(tiny_model_dir):
    """The tiny chatml model as the source, its template and reference."""
    model, tokenizer = load(tiny_model_dir("llama"))
    template, ref = record(model, tokenizer)
    return model, tokenizer, template, ref


def test_reference_records_ids_logits_replies_and_perplexity(source):
    model, tokenizer, template, ref = source
    assert len(ref.conversations) == len(PARITY_CONVERSATIONS) == 4
    for conv in ref.conversations:
        assert conv.ids == template.encode({"messages": conv.messages})["input_ids"]
        assert conv.prompt_ids == template.encode_prompt(conv.prompt_messages)
        assert tuple(conv.logits.shape) == (len(conv.ids), len(tokenizer)) and str(conv.logits.dtype) == "torch.float32"
    assert len(ref.replies) == 4 and all(0 < len(r) <= 8 for r in ref.replies)
    assert ref.ppl_tokens > 10 and ref.perplexity > 1


def test_a_merged_export_has_identical_logits_and_passes(source, tmp_path):
    model, tokenizer, template, ref = source
    folder = export_plain(model, tokenizer, tmp_path / "merged")
    report = check_artifact(folder, ref, template, max_new_tokens=8)
    json.dumps(report, allow_nan=False)  # the report is written as parity.json
    assert report["ok"] and report["failures"] == []
    assert all(c["ids"]["equal"] and c["generation_prompt"]["equal"] for c in report["template"])
    assert report["stop_tokens"]["ok"] and report["stop_tokens"]["stop_tokens"] == ["<|im_end|>"]
    logits = report["logits"]
    assert logits["positions"] == sum(len(c.ids) for c in ref.conversations)
    assert logits["max_abs_diff"] <= 1e-6 and logits["top1_agreement"] == 1.0
    assert report["replies"]["equal"] == report["replies"]["total"] == 4
    assert report["perplexity"]["artifact"] == pytest.approx(report["perplexity"]["source"], rel=1e-6)
    assert report["artifact"]["quant_method"] is None and report["artifact"]["dtype"] == "float32"
    assert {k: report[k] for k in ("template_ok", "stop_tokens_ok", "top1_agreement", "greedy_match")} == {
        "template_ok": True, "stop_tokens_ok": True, "top1_agreement": 1.0, "greedy_match": "4/4"}
    lines = summary_lines(report)
    assert lines[0].endswith(": ok") and "4/4 conversations" in lines[1]
    raise_for_failures(report)  # nothing to raise


def test_a_peft_lora_source_agrees_with_its_merged_export(tiny_model_dir, tmp_path):
    """The source is the unmerged peft model (as served with --adapters); the artifact is merged into the weights."""
    import torch
    from peft import LoraConfig, get_peft_model

    base, tokenizer = load(tiny_model_dir("llama"))
    torch.manual_seed(3)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules="all-linear",
                                                 init_lora_weights=False)).eval()
    template, ref = record(peft_model, tokenizer)
    plain, _ = load(tiny_model_dir("llama"))
    base_logits = plain(input_ids=torch.tensor([ref.conversations[0].ids])).logits[0].detach()
    assert (base_logits - ref.conversations[0].logits).abs().max() > 0.05  # the adapter changes the outputs

    folder = export_plain(peft_model.merge_and_unload(), tokenizer, tmp_path / "merged-lora")
    report = check_artifact(folder, ref, template, max_new_tokens=8)
    assert report["ok"], report["failures"]
    # merging reorders float32 sums: measured max |diff| 5.8e-6, mean 1.9e-7 (logits of magnitude <= 0.7)
    assert report["logits"]["max_abs_diff"] < 1e-4 and report["logits"]["top1_agreement"] == 1.0
    assert report["replies"]["equal"] == 4


def test_an_altered_chat_template_fails_naming_conversation_and_token(source, tmp_path):
    model, tokenizer, template, ref = source
    folder = export_plain(model, tokenizer, tmp_path / "altered")
    jinja = folder / "chat_template.jinja"
    text = jinja.read_text()
    altered = text.replace("'<|im_start|>' + message['role'] + '\n'", "'<|im_start|>' + message['role'] + ':\n'")
    assert altered != text
    jinja.write_text(altered)

    report = check_artifact(folder, ref, template, max_new_tokens=8)
    assert not report["ok"]
    first = report["failures"][0]
    assert (first["check"], first["conversation"], first["form"]) == ("template", 0, "whole conversation")
    from transformers import AutoTokenizer

    got = AutoTokenizer.from_pretrained(folder).apply_chat_template(PARITY_CONVERSATIONS[0], tokenize=True)["input_ids"]
    expected = ref.conversations[0].ids
    position = next(i for i, (a, b) in enumerate(zip(expected, got)) if a != b)
    assert first["position"] == position
    assert report["logits"]["max_abs_diff"] <= 1e-6  # the report is complete: same weights, compared on training ids
    with pytest.raises(ParityError, match=rf"renders parity conversation 0 \(whole conversation\) differently from "
                                          rf"training: first difference at token {position}: expected '.*', got '.*'; "
                                          r"export with the tokenizer .* \(and \d+ more problem"):
        raise_for_failures(report)
    assert "FAILED" in summary_lines(report)[0]


def test_a_generation_config_without_the_stop_token_fails(source, tmp_path):
    model, tokenizer, template, ref = source
    folder = export_plain(model, tokenizer, tmp_path / "no-stop")
    config = json.loads((folder / "generation_config.json").read_text())
    config["eos_token_id"] = tokenizer.pad_token_id  # <|endoftext|>, not the <|im_end|> that ends replies
    (folder / "generation_config.json").write_text(json.dumps(config))
    report = check_artifact(folder, ref, template, max_new_tokens=8)
    assert not report["ok"] and report["stop_tokens"]["missing"] == ["<|im_end|>"]
    assert [f["check"] for f in report["failures"]] == ["stop_tokens"]
    assert report["template_ok"] and not report["stop_tokens_ok"]
    assert report["template"][0]["ids"]["equal"] and report["logits"]["positions"] > 0
    with pytest.raises(ParityError, match=r"generation_config\.json' eos_token_id \[0\] lacks the stop token\(s\) "
                                          r"'<\|im_end\|>'"):
        raise_for_failures(report)


def test_a_modelfile_must_stop_on_every_stop_token(source, tmp_path):
    model, tokenizer, template, ref = source
    folder = export_plain(model, tokenizer, tmp_path / "ollama")
    (folder / "Modelfile").write_text('FROM ./model.gguf\nTEMPLATE """{{ .Prompt }}\nPARAMETER stop "<|im_end|>"\n"""\n'
                                      'PARAMETER temperature 0.7\n')
    report = check_artifact(folder, ref, template, max_new_tokens=4)
    assert report["stop_tokens"]["modelfile"]["missing"] == ["<|im_end|>"]  # a line inside TEMPLATE does not count
    with pytest.raises(ParityError, match=r"Modelfile' has no PARAMETER stop line for '<\|im_end\|>'"):
        raise_for_failures(report)
    (folder / "Modelfile").write_text('FROM ./model.gguf\nPARAMETER stop "<|im_end|>"\n')
    report = check_artifact(folder, ref, template, max_new_tokens=4)
    assert report["ok"] and report["stop_tokens"]["modelfile"]["stops"] == ["<|im_end|>"]


def test_a_torchao_int8_export_passes_with_a_small_logit_error(source, tiny_model_dir, tmp_path):
    import torch
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import AutoModelForCausalLM, TorchAoConfig

    model, tokenizer, template, ref = source
    folder = tmp_path / "torchao-int8"
    quantized = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"), dtype=torch.float32,
                                                     quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    export_plain(quantized, tokenizer, folder)
    report = check_artifact(folder, ref, template, max_new_tokens=8)
    assert report["ok"], report["failures"]
    assert report["artifact"]["quant_method"] == "torchao"
    # measured on this tiny model: max |diff| 0.005, mean 0.0007 (logits of magnitude <= 0.7), top-1 0.99
    assert 0 < report["logits"]["max_abs_diff"] < 0.05 and report["logits"]["mean_abs_diff"] < 0.01
    assert report["logits"]["top1_agreement"] >= 0.9


def test_conversations_without_a_system_message_are_compared_with_the_training_system(tiny_model_dir, tmp_path):
    model, tokenizer = load(tiny_model_dir("llama"))
    template, ref = record(model, tokenizer, system="You are terse.", max_new_tokens=4)
    folder = export_plain(model, tokenizer, tmp_path / "system")
    report = check_artifact(folder, ref, template, max_new_tokens=4)
    assert report["ok"], report["failures"]
    without = [c for c in report["template"] if not c["system_message"]]
    assert len(without) == 2 and all(c["without_system_equal"] is False for c in without)
    assert all("pass the system message when serving (not a failure)" in c["note"] for c in without)
    assert any("does not add training's --system" in line for line in summary_lines(report))


def test_a_gguf_folder_is_checked_through_the_artifact_path(source, tmp_path):
    """A q8_0 GGUF of the source as the artifact: loaded from the folder's one .gguf file, its chat template read
    from the file, the file's EOS id as the stop token, logits close to the source's."""
    from swiftkit.exporters.gguf_writer import write_gguf

    model, tokenizer, template, ref = source
    folder = tmp_path / "gguf"
    folder.mkdir()
    write_gguf(model, tokenizer, folder / "model-q8_0.gguf", "q8_0", eos_token_id=template.stop_token_ids[0])
    report = check_artifact(folder, ref, template, max_new_tokens=4)
    assert report["ok"], report["failures"]
    assert report["artifact"]["gguf_file"] == "model-q8_0.gguf" and report["artifact"]["quant_method"] == "gguf"
    assert report["stop_tokens"]["kind"] == "gguf"
    assert report["stop_tokens"]["gguf_eos_token_id"] == template.stop_token_ids[0]
    assert 0 < report["logits"]["max_abs_diff"] < 0.05 and report["logits"]["top1_agreement"] > 0.9
    assert report["perplexity"]["artifact"] is not None


def test_a_template_that_rejects_a_conversation_is_skipped_with_a_note(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    folder = shutil.copytree(tiny_model_dir("llama"), tmp_path / "nosys")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}"
                               "{% endif %}" + tokenizer.chat_template)
    tokenizer.save_pretrained(folder)
    model, tokenizer = load(folder)
    template, ref = record(model, tokenizer, max_new_tokens=4)
    skipped = [c for c in ref.conversations if c.ids is None]
    assert len(skipped) == 2 and all("no system role" in c.note for c in skipped)
    report = check_artifact(folder, ref, template, max_new_tokens=4)
    assert report["ok"] and sum("skipped" in c for c in report["template"]) == 2
    assert "(2 skipped or failed to render)" in summary_lines(report)[1]


def test_a_different_model_is_a_warning_and_nan_logits_a_failure(source, tmp_path):
    import torch

    model, tokenizer, template, ref = source
    other, _ = load(export_plain(model, tokenizer, tmp_path / "src"))
    with torch.no_grad():
        other.lm_head.weight.copy_(other.lm_head.weight.flip(0))  # every token's scores moved to another token
    report = check_artifact(export_plain(other, tokenizer, tmp_path / "flipped"), ref, template, max_new_tokens=4)
    assert report["ok"] and report["logits"]["top1_agreement"] < 0.5
    assert len(report["warnings"]) == 1 and "agrees with the source's at only" in report["warnings"][0]
    assert any(line.startswith("warning: ") for line in summary_lines(report))

    with torch.no_grad():
        other.model.norm.weight[0] = float("nan")
    report = check_artifact(export_plain(other, tokenizer, tmp_path / "nan"), ref, template, max_new_tokens=4)
    json.dumps(report, allow_nan=False)
    assert report["logits"]["max_abs_diff"] is None and [f["check"] for f in report["failures"]] == ["logits"]
    with pytest.raises(ParityError, match=r"gives non-finite logits \(NaN or inf\)"):
        raise_for_failures(report)
