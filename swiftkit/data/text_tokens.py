"""Words for text metrics that read Chinese, Japanese and Korean as well as space-separated text.

:func:`score_tokens` lower-cases a text and splits it into the tokens ROUGE, BLEU and F1 compare:
each CJK character (Chinese, Japanese kana, Korean Hangul) is a token of its own, every other run of
letters and digits is a token, punctuation and whitespace are dropped. (ROUGE's own tokenizer keeps
only a-z and 0-9, so Chinese text would score 0 with it.)
"""

from __future__ import annotations

import re

# CJK ideographs (with extension A and compatibility ideographs), hiragana, katakana, Hangul syllables.
CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{CJK_CHARS}]|[^\W_{CJK_CHARS}]+")
_ANY_CJK = re.compile(rf"[{CJK_CHARS}]")


def score_tokens(text: str) -> list[str]:
    """The tokens of ``text`` for overlap metrics (see the module docstring)."""
    return _TOKEN.findall(text.casefold())


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds at least one CJK character (ideograph, kana or Hangul syllable)."""
    return _ANY_CJK.search(text) is not None
