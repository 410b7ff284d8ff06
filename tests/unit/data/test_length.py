"""A row that cannot fit --max_length is found without tokenizing it, and the bound used never
claims a row is too long when it is not."""

from __future__ import annotations

import random

import pytest
from hosts import templates
from tiny import make_tokenizer

from swiftkit.data.encode import encode_rows
from swiftkit.data.length import chars_per_token, check_length, fewest_tokens
from swiftkit.templates import SequenceTooLong, get_template


def _texts(tokenizer) -> list[str]:
    """Ordinary text and text built to make tokens as long as possible."""
    vocab = tokenizer.get_vocab()
    longest = sorted(vocab, key=len)[-20:]
    rng = random.Random(0)
    words = ["alpha", "beta", "你好", "ü", "🙂", "  ", "\n", "<|im_start|>", "e\u0301"]
    pieces = [tokenizer.convert_tokens_to_string([t]) for t in longest]
    return [
        " ".join(rng.choice(words) for _ in range(2000)),
        "".join(rng.choice(pieces) for _ in range(500)),
        pieces[-1] * 300,
        "x" * 5000,
        " " * 5000,
    ]


def _wordpiece_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer()
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def _metaspace_tokenizer():
    """A Llama-2 style (SentencePiece-converted) BPE: Metaspace, byte fallback, a Replace normalizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"] + [f"<0x{i:02X}>" for i in range(256)])
    backend.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 50, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


@pytest.mark.parametrize("make", [make_tokenizer, _metaspace_tokenizer], ids=["byte-level", "metaspace"])
def test_the_bound_never_exceeds_the_real_token_count(make):
    tokenizer = make()
    span = chars_per_token(tokenizer)
    assert span > 0
    for text in _texts(tokenizer):
        tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert len(text) / span <= tokens, (len(text), span, tokens)


def test_the_real_model_tokenizer_has_a_bound_that_holds(smollm2_tokenizer):
    span = chars_per_token(smollm2_tokenizer)
    assert 10 <= span <= 200
    for text in _texts(smollm2_tokenizer):
        assert len(text) / span <= len(smollm2_tokenizer(text, add_special_tokens=False)["input_ids"])


def test_tokenizers_that_drop_or_fold_text_give_no_bound():
    assert chars_per_token(_wordpiece_tokenizer()) == 0


def _row(content: str) -> dict:
    return {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "ok"}],
            "_origin": "d.jsonl:7"}


def _template(strategy: str = "delete", max_length: int = 64):
    tokenizer = make_tokenizer()
    return get_template(tokenizer, "chatml", max_length=max_length, truncation_strategy=strategy,
                        registry=templates())


def test_a_row_far_over_max_length_is_too_long_without_tokenizing():
    template = _template()
    row = _row("word " * 100_000)
    bound = fewest_tokens(template, row)
    content_tokens = len(template.tokenizer(row["messages"][0]["content"], add_special_tokens=False)["input_ids"])
    assert bound is not None and 64 < bound <= content_tokens
    with pytest.raises(SequenceTooLong, match=r"^d\.jsonl:7: at least [\d,]+ tokens \(counted without tokenizing\) "
                                              r"is over max_length 64$"):
        check_length(template, row)


def test_rows_near_the_limit_are_tokenized_as_before():
    template = _template()
    near = _row("word " * (64 * int(chars_per_token(template.tokenizer)) // 5))  # many tokens over, but the
    # bound (characters over the slack, per longest token) stays under 64
    assert fewest_tokens(template, near) is None
    check_length(template, near)  # no error: the template decides
    with pytest.raises(SequenceTooLong, match="tokens is over max_length 64"):
        template.encode(near)


@pytest.mark.parametrize("strategy", ["left", "right"])
def test_truncating_strategies_always_tokenize(strategy):
    template = _template(strategy)
    check_length(template, _row("word " * 100_000))  # no error: the row is cut, not dropped


def test_encoding_skips_a_huge_row_and_keeps_the_others():
    template = _template(max_length=256)
    rows = [_row("hello"), _row("word " * 200_000), _row("bye")]
    encoded, skipped = encode_rows(rows, template)
    assert skipped == 1 and len(encoded) == 2
    assert encoded[0] == template.encode(rows[0])
