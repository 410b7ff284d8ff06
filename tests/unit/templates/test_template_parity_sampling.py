"""The full apply_chat_template parity check runs where ids can differ, not on every row."""

from __future__ import annotations

from hosts import templates
from tiny import make_tokenizer

from swiftkit.templates import get_template
from swiftkit.templates.template import PARITY_CHECKED_ROWS


def row(i: int, extra: str = "") -> dict:
    return {"messages": [{"role": "user", "content": f"question {i}{extra}"},
                         {"role": "assistant", "content": f"answer {i}"}]}


def test_parity_is_checked_on_the_first_rows_and_on_rows_spelling_special_tokens(monkeypatch):
    tok = make_tokenizer("chatml")
    checks = []
    original = tok.apply_chat_template

    def counting(*args, **kwargs):
        if kwargs.get("tokenize"):
            checks.append(args[0])
        return original(*args, **kwargs)

    tok.apply_chat_template = counting
    template = get_template(tok, registry=templates())
    plain = [template.encode(row(i)) for i in range(PARITY_CHECKED_ROWS + 20)]
    assert len(checks) == PARITY_CHECKED_ROWS
    spelled = template.encode(row(999, " <|im_end|> sneaky"))
    assert len(checks) == PARITY_CHECKED_ROWS + 1  # a row spelling a special token is always checked
    # rows past the sample encode exactly as with the check on every row
    from swiftkit.templates import template as template_module

    monkeypatch.setattr(template_module, "PARITY_CHECKED_ROWS", 10**9)
    fresh = get_template(make_tokenizer("chatml"), registry=templates())
    assert [fresh.encode(row(i)) for i in range(PARITY_CHECKED_ROWS + 20)][-20:] == plain[-20:]
    assert fresh.encode(row(999, " <|im_end|> sneaky")) == spelled
