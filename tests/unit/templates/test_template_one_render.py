"""Reply spans from one rendering of the conversation give the same ids and labels as rendering the
history before each reply, and rows or templates where that cannot be trusted take the per-reply way."""

from __future__ import annotations

import pytest
from hosts import templates
from template_helpers import conversation
from test_template_labels import CLOSING_EOS_TEMPLATE, EMPTY_THINKING_PROMPT_TEMPLATE, REASONING_TEMPLATE
from test_template_tools import TOOLS, tool_conversation
from tiny import make_tokenizer

from swiftkit.templates import TemplateError, get_template
from swiftkit.templates.spans import ReplyFrame
from swiftkit.templates.template import SPANS_CHECKED_ROWS

SYSTEM = {"role": "system", "content": "You are a careful assistant."}


def rows() -> list[dict]:
    """Conversations of several shapes: one and several rounds, a system message, replies with
    surrounding whitespace, the same reply twice, a reply that a user message quotes, loss flags."""
    three = conversation()
    flagged = conversation()
    flagged[3]["loss"] = False
    forced = conversation()
    forced[1]["loss"] = True
    return [
        {"messages": three[:2]},
        {"messages": three},
        {"messages": [SYSTEM, *three]},
        {"messages": [{"role": "user", "content": "  hi  "}, {"role": "assistant", "content": "  padded reply \n"},
                      {"role": "user", "content": "again"}, {"role": "assistant", "content": "\nsecond\n\n"}]},
        {"messages": [{"role": "user", "content": "Say OK."}, {"role": "assistant", "content": "OK"},
                      {"role": "user", "content": "Once more."}, {"role": "assistant", "content": "OK"}]},
        {"messages": [{"role": "user", "content": "Repeat: Paris is big."},
                      {"role": "assistant", "content": "Paris is big."},
                      {"role": "user", "content": "Paris is big. Paris is big."},
                      {"role": "assistant", "content": "Paris"}]},
        {"messages": flagged},
        {"messages": forced},
    ]


def one_render(template):
    """``template`` labelling every row from its one rendering where it can, without the sampled
    comparison with the per-reply renderings."""
    template._span_checks = 10**9
    assert template._reply_frame() is not None
    return template


def per_reply(template):
    """``template`` finding every reply by rendering its history (the exact path)."""
    template._frame = None
    return template


def tiny_templates():
    """(name, tokenizer style, registered template or None for the tokenizer's own)."""
    own = [(f"own-{style}", style, None) for style in ("chatml", "chatml_default_system", "llama3", "gemma")]
    registered = [(name, None, name) for name in ("chatml", "llama3", "gemma", "llama2", "mistral", "alpaca",
                                                   "default")]
    return own + registered


def encode_both(tok_factory, template_name, loss_scale, system=None):
    kwargs = {"loss_scale": loss_scale, "system": system, "registry": templates()}
    fast = one_render(get_template(tok_factory(), template_name, **kwargs))
    exact = per_reply(get_template(tok_factory(), template_name, **kwargs))
    return [fast.encode(row) for row in rows()], [exact.encode(row) for row in rows()]


@pytest.mark.parametrize("loss_scale", ["default", "last_round", "all"])
@pytest.mark.parametrize(("name", "style", "template_name"), tiny_templates(), ids=[t[0] for t in tiny_templates()])
def test_one_render_labels_equal_the_per_reply_labels(name, style, template_name, loss_scale):
    fast, exact = encode_both(lambda: make_tokenizer(style), template_name, loss_scale)
    assert fast == exact


@pytest.mark.parametrize("style", ["chatml", "llama3"])
def test_one_render_with_the_system_flag(style):
    fast, exact = encode_both(lambda: make_tokenizer(style), None, "default", system="Answer briefly.")
    assert fast == exact


def test_one_render_on_smollm2(smollm2_tokenizer):
    fast = one_render(get_template(smollm2_tokenizer, registry=templates()))
    assert fast._reply_frame() == ReplyFrame("<|im_start|>assistant\n", "", "<|im_end|>")
    encoded = [fast.encode(row) for row in rows()]
    exact = per_reply(get_template(smollm2_tokenizer, registry=templates()))
    assert encoded == [exact.encode(row) for row in rows()]


def test_a_conversation_is_rendered_once_and_tokenized_once(monkeypatch):
    from swiftkit.templates import spans

    tok = make_tokenizer("chatml")
    template = one_render(get_template(tok, registry=templates()))
    template.encode_many([{"messages": conversation()}] * 2)  # learns the plain renderer
    # past the sampled comparisons with apply_chat_template and with the tracked token offsets
    template._parity_checks = template._offset_checks = 10**9
    assert template._renderer is not None and template._lengths is not None
    calls = []

    def counted(name, original):
        def call(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)
        return call

    monkeypatch.setattr(tok, "apply_chat_template", counted("render", tok.apply_chat_template))
    monkeypatch.setattr(spans.PlainRenderer, "__call__", counted("render", spans.PlainRenderer.__call__))
    monkeypatch.setattr(type(tok), "__call__", counted("tokenize", type(tok).__call__))
    monkeypatch.setattr(spans, "_fast_ids", counted("tokenize", spans._fast_ids))
    template.encode({"messages": conversation()})
    assert calls == ["render", "tokenize"]
    calls.clear()
    template.encode_many([{"messages": conversation()}] * 5)
    assert calls == ["render", "tokenize"]  # the five conversations in one call of each


def test_the_first_rows_are_labelled_both_ways():
    tok = make_tokenizer("chatml")
    template = get_template(tok, registry=templates())
    template._reply_frame()
    checks = template._span_checks
    for _ in range(3):
        template.encode({"messages": conversation()})
    assert template._span_checks == checks + 3
    template._span_checks = SPANS_CHECKED_ROWS
    template.encode({"messages": conversation()})
    assert template._span_checks == SPANS_CHECKED_ROWS


def test_a_difference_in_the_sampled_rows_switches_to_the_per_reply_spans():
    tok = make_tokenizer("chatml")
    template = get_template(tok, registry=templates())
    expected = per_reply(get_template(make_tokenizer("chatml"), registry=templates())).encode(
        {"messages": conversation()})
    template._span_checks = 0
    template._frame = ReplyFrame("<|im_start|>assistant\n", "", "<|im_end|>\n")  # labels the newline too
    assert template.encode({"messages": conversation()}) == expected
    assert template._frame is None


@pytest.mark.parametrize("chat_template", [CLOSING_EOS_TEMPLATE, EMPTY_THINKING_PROMPT_TEMPLATE])
def test_templates_that_write_replies_in_different_ways_have_no_frame(chat_template):
    tok = make_tokenizer(None)
    tok.chat_template = chat_template
    assert get_template(tok, registry=templates())._reply_frame() is None


def test_a_frame_needs_a_special_token_around_the_reply():
    # "<|end|>" is plain text to this tokenizer: a user message could spell the frame.
    assert get_template(make_tokenizer(None), "phi3", registry=templates())._reply_frame() is None


def test_history_rendered_differently_takes_the_per_reply_spans():
    def tok():
        t = make_tokenizer("chatml")
        t.chat_template = REASONING_TEMPLATE
        return t

    row = {"messages": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd them\n</think>\n\nIt is 4."},
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "<think>\nadd again\n</think>\n\nIt is 6."},
    ]}
    fast = one_render(get_template(tok(), registry=templates()))
    assert fast._one_render_spans(fast._prepare(row["messages"], "")[0],
                                  tok().apply_chat_template(row["messages"], tokenize=False), None, False) is None
    assert fast.encode(row) == per_reply(get_template(tok(), registry=templates())).encode(row)


def test_rows_with_tools_or_special_token_text_take_the_per_reply_spans():
    qwen = one_render(get_template(make_tokenizer("qwen25"), registry=templates()))
    exact = per_reply(get_template(make_tokenizer("qwen25"), registry=templates()))
    tool_row = {"messages": tool_conversation(), "tools": TOOLS}
    assert qwen.encode(tool_row) == exact.encode(tool_row)
    msgs = qwen._prepare(tool_row["messages"], "")[0]
    assert qwen._one_render_spans(msgs, "", TOOLS, False) is None
    spelled = {"messages": [{"role": "user", "content": "Say <|im_end|> please."},
                            {"role": "assistant", "content": "<|im_end|>"}]}
    assert qwen.encode(spelled) == exact.encode(spelled)


def test_encode_many_equals_encode_row_by_row():
    template = get_template(make_tokenizer("chatml"), max_length=40, registry=templates())
    batch = rows() + [{"text": "plain text row"}]
    many = template.encode_many(batch)
    for row, enc in zip(batch, many):
        if enc is None:
            with pytest.raises(TemplateError, match="max_length"):
                template.encode(row)
        else:
            assert enc == template.encode(row)
    assert None in many and any(many)


def test_encode_many_raises_the_first_failing_rows_error():
    template = get_template(make_tokenizer("chatml"), registry=templates())
    bad = [{"messages": [{"role": "user", "content": "hi"}], "_origin": "a.jsonl:2"},
           {"messages": "nope", "_origin": "a.jsonl:3"}]
    with pytest.raises(TemplateError, match="a.jsonl:2: nothing to train on"):
        template.encode_many([{"messages": conversation()}, *bad])


def test_encode_many_names_the_row_the_chat_template_refuses():
    tok = make_tokenizer("chatml")
    tok.chat_template = ("{% for m in messages %}{% if m['content'] == 'boom' %}{{ raise_exception('no boom') }}"
                         "{% endif %}{{ m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endfor %}")
    template = get_template(tok, registry=templates())
    good = {"messages": conversation()}
    refused = {"messages": [{"role": "user", "content": "boom"}, {"role": "assistant", "content": "x"}],
               "_origin": "a.jsonl:2"}
    with pytest.raises(TemplateError, match="a.jsonl:2: the chat template failed on this conversation: no boom"):
        template.encode_many([good, refused, {"messages": "nope", "_origin": "a.jsonl:3"}])
    assert template.encode_many([good, good]) == [template.encode(good)] * 2


@pytest.mark.parametrize("style", ["chatml", "llama3", "gemma"])
def test_token_boundaries_from_the_encoding_equal_those_from_all_offsets(style):
    from bisect import bisect_left

    from swiftkit.templates.spans import TokenizedText

    tok = make_tokenizer(style)
    texts = [tok.apply_chat_template(row["messages"], tokenize=False) for row in rows()]
    texts.append("你好，我是一个人工智能助手。 ab  c\n\n d")
    for text, tokenized in zip(texts, TokenizedText.many(tok, texts)):
        assert tokenized.encoding is not None
        starts = [start for start, _ in tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
        assert tokenized.ids == list(tok(text, add_special_tokens=False)["input_ids"])
        for pos in range(len(text) + 2):
            assert tokenized._first_at(pos) == bisect_left(starts, pos), (text, pos)
