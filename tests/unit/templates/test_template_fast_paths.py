"""The two shortcuts of batch encoding give what the plain way gives: conversations of plain messages
rendered by the compiled chat template (instead of apply_chat_template), and token offsets of byte-level
tokenizers taken from the tokens' byte lengths (instead of the offsets the tokenizer tracks). Where a
shortcut does not hold, the plain way is taken."""

from __future__ import annotations

from bisect import bisect_left

import pytest
from hosts import templates
from template_helpers import chat_ids, conversation, labelled_spans
from test_template_one_render import rows
from tiny import make_tokenizer

from swiftkit.templates import get_template
from swiftkit.templates.spans import PlainRenderer, TokenizedText, byte_lengths, is_plain
from swiftkit.templates.template import _UNLEARNED, OFFSETS_CHECKED_ROWS

STYLES = ["chatml", "chatml_default_system", "llama3", "gemma", "qwen25"]
ODD_TEXTS = ["你好，我是一个人工智能助手。 ab  c\n\n d", "emoji 🎉🎉 and   spaces\t\ttabs ", "Ünïcödé — dashes",
             "<|im_start|>user\nspelled<|im_end|>\n"]


def exact(template):
    """``template`` rendering with apply_chat_template and tokenizing with tracked offsets."""
    template._renderer = template._lengths = None
    return template


def texts_of(tok) -> list[str]:
    return [tok.apply_chat_template(row["messages"], tokenize=False) for row in rows()] + ODD_TEXTS


@pytest.mark.parametrize("style", STYLES)
def test_byte_starts_give_the_token_boundaries_the_tracked_offsets_give(style):
    tok = make_tokenizer(style)
    lengths = byte_lengths(tok)
    assert lengths is not None
    texts = texts_of(tok)
    for text, tokenized in zip(texts, TokenizedText.many(tok, texts, lengths)):
        assert tokenized.starts is not None and tokenized.encoding is None
        assert tokenized.ids == list(tok(text, add_special_tokens=False)["input_ids"])
        starts = [start for start, _ in tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
        for pos in range(len(text) + 2):
            assert tokenized._first_at(pos) == bisect_left(starts, pos), (text, pos)


def test_byte_starts_on_smollm2(smollm2_tokenizer):
    tok = smollm2_tokenizer
    texts = texts_of(tok)
    for text, tokenized in zip(texts, TokenizedText.many(tok, texts, byte_lengths(tok))):
        assert tokenized.starts is not None
        starts = [start for start, _ in tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
        assert [tokenized._first_at(pos) for pos in range(len(text) + 1)] == [bisect_left(starts, p)
                                                                             for p in range(len(text) + 1)]


def _byte_level(**changes):
    """A trained byte-level BPE tokenizer with one part changed."""
    from tokenizers import normalizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = make_tokenizer("chatml")
    raw = tok.backend_tokenizer
    if "normalizer" in changes:
        raw.normalizer = normalizers.NFC()
    if "trim" in changes:
        raw.post_processor = processors.ByteLevel(trim_offsets=True)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if "lstrip" in changes:
        from tokenizers import AddedToken

        tok.add_special_tokens({"additional_special_tokens": [AddedToken("<mask>", lstrip=True)]})
    return tok


def _metaspace():
    """A sentencepiece-style tokenizer (Metaspace, byte fallback): its pieces do not spell bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    raw.train_from_iterator(["hello world, a small corpus"] * 5,
                            trainer=trainers.BpeTrainer(vocab_size=100, special_tokens=["<unk>"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>")


@pytest.mark.parametrize("kind", ["normalizer", "trim", "lstrip", "metaspace", "python"])
def test_byte_lengths_refuse_tokenizers_whose_offsets_are_not_their_bytes(kind):
    if kind == "metaspace":
        tok = _metaspace()
    elif kind == "python":
        from transformers.models.byt5.tokenization_byt5 import ByT5Tokenizer

        tok = ByT5Tokenizer(extra_ids=0)
    else:
        tok = _byte_level(**{kind: True})
    assert byte_lengths(tok) is None


def test_a_text_whose_lengths_do_not_add_up_is_tokenized_with_offsets():
    tok = make_tokenizer("chatml")
    lengths = byte_lengths(tok)
    wrong = list(lengths)
    wrong[tok.convert_tokens_to_ids("<|im_end|>")] += 1
    texts = ["no special token here", "ends with a special token<|im_end|>"]
    plain, special = TokenizedText.many(tok, texts, wrong)
    assert plain.starts is not None
    assert special.starts is None and special.encoding is not None  # tokenized again, with its offsets
    starts = [start for start, _ in tok(texts[1], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    assert [special._first_at(p) for p in range(len(texts[1]) + 1)] == [bisect_left(starts, p)
                                                                        for p in range(len(texts[1]) + 1)]


def test_a_difference_in_the_checked_rows_switches_to_the_tracked_offsets():
    tok = make_tokenizer("chatml")
    template = get_template(tok, registry=templates())
    lengths = list(byte_lengths(tok))
    # Every chatml turn has one of each, so each text's lengths still add up; the boundaries do not.
    lengths[tok.convert_tokens_to_ids("<|im_start|>")] += 1
    lengths[tok.convert_tokens_to_ids("<|im_end|>")] -= 1
    template._lengths = lengths
    reference = exact(get_template(make_tokenizer("chatml"), registry=templates()))
    assert template.encode_many(rows()) == [reference.encode(row) for row in rows()]
    assert template._lengths is None


def test_the_tracked_offsets_are_compared_on_the_first_rows_only():
    template = get_template(make_tokenizer("chatml"), registry=templates())
    template.encode_many(rows())
    assert template._offset_checks == len(rows())
    template._offset_checks = OFFSETS_CHECKED_ROWS
    template.encode_many(rows())
    assert template._offset_checks == OFFSETS_CHECKED_ROWS and template._lengths is not None


@pytest.mark.parametrize("loss_scale", ["default", "all"])
@pytest.mark.parametrize("style", STYLES)
def test_batch_encoding_with_both_shortcuts_equals_the_plain_way(style, loss_scale):
    fast = get_template(make_tokenizer(style), loss_scale=loss_scale, registry=templates())
    slow = exact(get_template(make_tokenizer(style), loss_scale=loss_scale, registry=templates()))
    encoded = fast.encode_many(rows())
    assert encoded == slow.encode_many(rows()) == [slow.encode(row) for row in rows()]
    assert isinstance(fast._renderer, PlainRenderer) and fast._lengths is not None
    tok = fast.tokenizer
    assert [e["input_ids"] for e in encoded] == [chat_ids(tok, row["messages"]) for row in rows()]


def test_the_plain_renderer_passes_the_special_tokens_and_the_template_variables():
    source = ("{% for m in messages %}{{ bos_token + m['role'] + ':' + m['content'] + eos_token }}{% endfor %}"
              "{% if flavour is defined %}{{ flavour }}{% endif %}")
    tok = make_tokenizer("chatml")
    tok.chat_template = source
    tok.bos_token = "<|im_start|>"
    renderer = PlainRenderer(tok, {"flavour": "salty"})
    conversations = [row["messages"] for row in rows() if is_plain(row["messages"])]
    assert renderer(conversations) == tok.apply_chat_template(conversations, tokenize=False, flavour="salty")
    assert renderer.agrees(conversations)
    assert PlainRenderer(tok).agrees(conversations)  # without the variable, both leave it out


def test_a_renderer_that_renders_otherwise_is_not_adopted(monkeypatch):
    monkeypatch.setattr(PlainRenderer, "__call__", lambda self, conversations: [c[0]["content"] for c in conversations])
    tok = make_tokenizer("chatml")
    template = get_template(tok, registry=templates())
    encoded = template.encode_many(rows())
    assert template._renderer is None
    assert [e["input_ids"] for e in encoded] == [chat_ids(tok, row["messages"]) for row in rows()]


def test_a_sample_the_template_refuses_decides_nothing():
    tok = make_tokenizer("chatml")
    tok.chat_template = ("{% for m in messages %}{% if m['content'] == 'boom' %}{{ raise_exception('no boom') }}"
                         "{% endif %}{{ m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endfor %}")
    template = get_template(tok, registry=templates())
    refused = [{"role": "user", "content": "boom"}, {"role": "assistant", "content": "x"}]
    assert template._plain_renderer([refused]) is None
    assert template._renderer is _UNLEARNED
    assert isinstance(template._plain_renderer([conversation()]), PlainRenderer)


def test_messages_with_other_keys_are_rendered_by_apply_chat_template():
    # transformers copies reasoning under its other names before rendering; the plain renderer would not.
    tok = make_tokenizer("chatml")
    tok.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
                         "{% if m.thinking is defined %}{{ '<think>' + m.thinking + '</think>' }}{% endif %}"
                         "{{ m['content'] + '<|im_end|>\n' }}{% endfor %}")
    messages = [{"role": "user", "content": "Why?"},
                {"role": "assistant", "content": "Because.", "reasoning_content": "It is so."}]
    assert not is_plain(messages)
    template = get_template(tok, registry=templates())
    encoded = template.encode_many([{"messages": messages}, {"messages": conversation()}])
    assert encoded[0]["input_ids"] == chat_ids(tok, messages)
    assert "<think>It is so.</think>" in tok.decode(encoded[0]["input_ids"])
    assert labelled_spans(tok, encoded[1])  # the plain row beside it is labelled as usual


def test_is_plain():
    assert is_plain(conversation())
    assert not is_plain([{"role": "user", "content": "a", "name": "x"}])
    assert not is_plain([{"role": "user", "content": ["a"]}])
