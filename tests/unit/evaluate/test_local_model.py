"""LocalEvalModel: log-likelihoods checked against plain forward passes, replies against the infer engine."""

from __future__ import annotations

import pytest
from hosts import templates
from tiny import make_tiny_model, make_tokenizer

from swiftkit.evaluate.local import LocalEvalModel
from swiftkit.evaluate.model import EvalModel

HI = [{"role": "user", "content": "Hello! How can I help you today?"}]
CONVERSATIONS = [HI, [{"role": "user", "content": "Write a poem about the sea."}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Numbers: 1 2 3"}]]


@pytest.fixture(scope="module")
def parts():
    from swiftkit.templates import get_template

    tok = make_tokenizer("chatml")
    return make_tiny_model("llama", vocab_size=len(tok)), get_template(tok, registry=templates())


@pytest.fixture
def local(parts):
    model, template = parts
    return LocalEvalModel(model, template, name="tiny", batch_size=2)


def rows(model, ids: list[int]):
    """log_softmax rows of one forward pass over ``ids``: row p predicts token p + 1."""
    import torch

    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)


def by_hand(model, ids: list[int], first: int) -> tuple[float, bool]:
    lp = rows(model, ids)
    return (sum(lp[t - 1, ids[t]].item() for t in range(first, len(ids))),
            all(int(lp[t - 1].argmax()) == ids[t] for t in range(first, len(ids))))


def test_meets_the_protocol(local):
    assert isinstance(local, EvalModel) and local.name == "tiny" and local.max_length == 512


def test_loglikelihood_is_the_sum_over_the_continuation_tokens(parts, local):
    model, template = parts
    tok = template.tokenizer
    requests = [("The capital of France is", " Paris"), ("Hello! How can I", " help you"), ("Numbers: 1", " 2 3 4")]
    got = local.loglikelihood(requests)
    for (context, continuation), (total, greedy) in zip(requests, got):
        ids = tok(context + continuation, add_special_tokens=False)["input_ids"]
        first = len(tok(context, add_special_tokens=False)["input_ids"])  # no merge across these boundaries
        expected, expected_greedy = by_hand(model, ids, first)
        assert total == pytest.approx(expected, abs=1e-4) and greedy == expected_greedy
        assert total < 0


def test_a_token_merged_across_the_boundary_belongs_to_the_continuation(parts, local):
    model, template = parts
    tok = template.tokenizer
    context, continuation = "The quick bro", "wn fox"
    ids = tok(context + continuation, add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["The", "Ġquick", "Ġbrown", "Ġfox"]  # "bro" + "wn" is one token
    total, greedy = local.loglikelihood([(context, continuation)])[0]
    assert (total, greedy) == pytest.approx(by_hand(model, ids, 2), abs=1e-4)


def test_requests_keep_their_order_whatever_the_batching(parts):
    model, template = parts
    requests = [("a", " b c d e f"), ("The quick brown", " fox"), ("x", "y"), ("Hello!", " How can I help")]
    one = LocalEvalModel(model, template, name="tiny", batch_size=1).loglikelihood(requests)
    many = LocalEvalModel(model, template, name="tiny", batch_size=3).loglikelihood(requests)
    assert [t for t, _ in many] == pytest.approx([t for t, _ in one], abs=1e-5)
    assert len({round(t, 3) for t, _ in one}) == 4
    assert local_empty(model, template) == [(0.0, True)]


def local_empty(model, template):
    return LocalEvalModel(model, template, name="tiny").loglikelihood([("The sea", "")])


def test_long_requests_lose_their_start_and_keep_the_continuation(parts):
    model, template = parts
    tok = template.tokenizer
    short = LocalEvalModel(model, template, name="tiny", max_length=6)
    context, continuation = "The quick brown fox jumps over the lazy", " dog."
    ids = tok(context + continuation, add_special_tokens=False)["input_ids"]
    cont = len(ids) - len(tok(context, add_special_tokens=False)["input_ids"])
    assert len(ids) > 6 and cont == 2
    assert short.loglikelihood([(context, continuation)])[0][0] == pytest.approx(
        by_hand(model, ids[-6:], 6 - cont)[0], abs=1e-4)
    with pytest.raises(ValueError, match="leaves no room for the context"):
        short.loglikelihood([("The", " quick brown fox jumps over the lazy dog.")])


def test_rolling_loglikelihood_scores_every_token_but_the_first(parts, local):
    model, template = parts
    tok = template.tokenizer
    text = "What is the capital of France? Paris is the capital of France."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    (total, count), (empty_total, empty_count) = local.rolling_loglikelihood([text, ""])
    assert count == len(ids) - 1 and (empty_total, empty_count) == (0.0, 0)
    assert total == pytest.approx(by_hand(model, ids, 1)[0], abs=1e-4)


def test_rolling_windows_score_each_token_once_with_half_a_window_of_context(parts):
    model, template = parts
    ids = template.tokenizer("The quick brown fox jumps over the lazy dog. Hello! How can I help you today?",
                             add_special_tokens=False)["input_ids"]
    assert len(ids) == 20
    # max_length 8: window [0, 8) scores 1..7, then [4, 12) scores 8..11, [8, 16) 12..15, [12, 20) 16..19
    expected = by_hand(model, ids[0:8], 1)[0]
    for begin in (4, 8, 12):
        expected += by_hand(model, ids[begin:begin + 8], 4)[0]
    total, count = LocalEvalModel(model, template, name="tiny", max_length=8).rolling_loglikelihood(
        [template.tokenizer.decode(ids)])[0]
    assert count == 19 and total == pytest.approx(expected, abs=1e-4)


def test_a_tokenizer_that_adds_bos_gets_it_before_plain_text():
    from tokenizers.processors import TemplateProcessing

    from swiftkit.templates import get_template

    tok = make_tokenizer(None)
    tok._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    assert tok("Hello")["input_ids"][0] == tok.bos_token_id
    model = make_tiny_model("llama", vocab_size=len(tok))
    local = LocalEvalModel(model, get_template(tok, "chatml", registry=templates()), name="bos")
    ids = tok("Hello! How can I help you today?")["input_ids"]
    total, count = local.rolling_loglikelihood(["Hello! How can I help you today?"])[0]
    assert count == len(ids) - 1 and total == pytest.approx(by_hand(model, ids, 1)[0], abs=1e-4)
    first = local.loglikelihood([("", "Hello!")])[0][0]  # the continuation's first token is scored after BOS
    assert first == pytest.approx(by_hand(model, tok("Hello!")["input_ids"], 1)[0], abs=1e-4)


def test_render_is_the_infer_prompt_and_tokenizes_back_to_its_ids(parts, local):
    _, template = parts
    for messages in CONVERSATIONS:
        text = local.render(messages)
        assert text.endswith("<|im_start|>assistant\n")
        assert template.tokenizer(text, add_special_tokens=False)["input_ids"] == template.encode_prompt(messages)


def test_greedy_replies_equal_the_infer_engine_and_honour_stop_strings(parts, local):
    from swiftkit.inference import TransformersEngine

    model, template = parts
    expected = TransformersEngine(model, template).generate(CONVERSATIONS, max_new_tokens=8)
    assert local.generate(CONVERSATIONS, max_new_tokens=8) == expected
    assert any(len(reply) > 4 for reply in expected), expected
    reply = next(r for r in expected if len(r) > 4)
    stop = reply[2:4]
    cut = local.generate([CONVERSATIONS[expected.index(reply)]], max_new_tokens=8, stop=[stop])[0]
    assert cut == reply[:reply.index(stop)]


def test_a_model_in_training_is_evaluated_in_eval_mode_and_left_training(parts, local):
    from peft import LoraConfig, get_peft_model

    model, template = parts
    expected_ll = local.loglikelihood([("The capital of France is", " Paris")])
    expected_reply = local.generate([HI], max_new_tokens=6)
    base = make_tiny_model("llama", vocab_size=len(template.tokenizer))  # the same weights as ``model``
    for module in base.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.5  # used in training mode only: any leak changes the numbers
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))  # starts as a no-op
    peft_model.train()
    training = LocalEvalModel(peft_model, template, name="training")
    assert training.loglikelihood([("The capital of France is", " Paris")])[0][0] == pytest.approx(
        expected_ll[0][0], abs=1e-5)
    assert training.generate([HI], max_new_tokens=6) == expected_reply
    assert training.rolling_loglikelihood(["Paris is the capital of France."])[0][1] > 0
    assert peft_model.training and all(m.training for m in peft_model.modules())
