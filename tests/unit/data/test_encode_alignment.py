"""Encoding alignment rows: prompt ids equal the serving prompt, replies end at the end-of-turn token,
truncation follows --truncation_strategy, and each method gets its trainer's columns."""

from __future__ import annotations

import pytest
from hosts import templates

from swiftkit.data.encode_alignment import encode_for, encode_pair, grpo_prompt, real_tokens
from swiftkit.data.errors import DatasetError
from swiftkit.templates import SequenceTooLong, get_template

PAIR = {"messages": [{"role": "user", "content": "What is the capital of France?"},
                     {"role": "assistant", "content": "Paris is the capital of France."}],
        "rejected_response": "I do not know, maybe Lyon.", "_origin": "p.jsonl:1"}


def serving_prompt(tok, messages, system=None):
    msgs = ([{"role": "system", "content": system}] if system else []) + messages
    return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)["input_ids"]


def test_smollm2_pair_prompt_is_the_serving_prompt(smollm2_tokenizer):
    """SmolLM2's template adds a default system prompt: the pair's prompt ids must include it, exactly
    as a request to the server would be encoded."""
    tok = smollm2_tokenizer
    template = get_template(tok, registry=templates())
    enc = encode_pair(template, PAIR)
    assert enc["prompt_ids"] == serving_prompt(tok, PAIR["messages"][:-1])
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert enc["chosen_ids"][-1] == end and enc["rejected_ids"][-1] == end
    assert tok.decode(enc["chosen_ids"][:-1]) == "Paris is the capital of France."
    assert tok.decode(enc["rejected_ids"][:-1]) == "I do not know, maybe Lyon."
    # prompt + reply is exactly the conversation apply_chat_template renders, up to the end of turn
    full = tok.apply_chat_template(PAIR["messages"], tokenize=True)["input_ids"]
    assert full[:len(enc["prompt_ids"]) + len(enc["chosen_ids"])] == enc["prompt_ids"] + enc["chosen_ids"]


def test_the_system_flag_reaches_the_prompt(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    enc = encode_pair(get_template(tok, system="Answer briefly.", registry=templates()), PAIR)
    assert enc["prompt_ids"] == serving_prompt(tok, PAIR["messages"][:-1], system="Answer briefly.")


def test_a_multi_turn_pair_scores_only_the_last_reply(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    row = {**PAIR, "messages": history + PAIR["messages"]}
    enc = encode_pair(get_template(tok, registry=templates()), row)
    assert enc["prompt_ids"] == serving_prompt(tok, row["messages"][:-1])
    assert tok.decode(enc["chosen_ids"], skip_special_tokens=True) == "Paris is the capital of France."


def test_truncation_strategies(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    full = get_template(tok, registry=templates())
    prompt, reply = full.encode_completion(PAIR)
    limit = len(prompt) + len(reply) - 3
    with pytest.raises(SequenceTooLong):
        get_template(tok, max_length=limit, registry=templates()).encode_completion(PAIR)
    left = get_template(tok, max_length=limit, truncation_strategy="left", registry=templates()).encode_completion(PAIR)
    assert left == (prompt[3:], reply)
    right = get_template(tok, max_length=limit, truncation_strategy="right", registry=templates()).encode_completion(PAIR)
    assert right == (prompt, reply[:-3])


def test_encode_for_counts_rows_over_max_length_and_refuses_when_none_fit(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    short = {**PAIR, "rejected_response": "No."}
    rejected = {**PAIR, "messages": PAIR["messages"][:-1] + [{"role": "assistant", "content": PAIR["rejected_response"]}]}
    n = max(sum(map(len, get_template(tok, registry=templates()).encode_completion(row))) for row in (PAIR, rejected))
    long_row = {**PAIR, "rejected_response": "word " * 200}
    rows, skipped = encode_for("dpo", [PAIR, long_row, short], get_template(tok, max_length=n + 5, registry=templates()))
    assert len(rows) == 2 and skipped == 1
    with pytest.raises(DatasetError, match="every row of --dataset"):
        encode_for("dpo", [long_row], get_template(tok, max_length=n + 5, registry=templates()))


def test_columns_per_method(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    template = get_template(tok, registry=templates())
    [dpo], _ = encode_for("dpo", [PAIR], template)
    assert set(dpo) == {"prompt_ids", "chosen_ids", "rejected_ids"}
    [cpo], _ = encode_for("cpo", [PAIR], template)
    assert cpo["prompt"] == tok.decode(dpo["prompt_ids"]) and cpo["chosen_ids"] == dpo["chosen_ids"]
    [rm], _ = encode_for("rm", [PAIR], template)
    assert rm["chosen_ids"] == dpo["prompt_ids"] + dpo["chosen_ids"]
    assert rm["rejected_ids"] == dpo["prompt_ids"] + dpo["rejected_ids"]
    kto_row = {"messages": PAIR["messages"], "label": False}
    [kto], _ = encode_for("kto", [kto_row], template)
    assert kto == {"prompt_ids": dpo["prompt_ids"], "completion_ids": dpo["chosen_ids"], "label": False}
    [ppo], _ = encode_for("ppo", [{"messages": PAIR["messages"][:-1]}], template)
    assert ppo == {"input_ids": dpo["prompt_ids"]}
    assert real_tokens("dpo", [dpo]) == 2 * len(dpo["prompt_ids"]) + len(dpo["chosen_ids"]) + len(dpo["rejected_ids"])
    assert real_tokens("rm", [rm]) == len(rm["chosen_ids"]) + len(rm["rejected_ids"])


def test_grpo_prompts_carry_the_system_prompt_and_extra_columns(tokenizer_factory):
    tok = tokenizer_factory("chatml")
    template = get_template(tok, system="Think first.", registry=templates())
    row = {"messages": [{"role": "user", "content": "2+2?"}], "solution": "4", "level": 1, "_origin": "g:1"}
    out = grpo_prompt(template, row)
    assert out == {"prompt": [{"role": "system", "content": "Think first."}, {"role": "user", "content": "2+2?"}],
                   "solution": "4", "level": 1}
    # TRL renders this prompt with the same chat template: the ids are the serving prompt's
    assert tok.apply_chat_template(out["prompt"], add_generation_prompt=True, tokenize=True)["input_ids"] == \
        template.encode_prompt(row["messages"])
