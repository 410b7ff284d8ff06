"""Final answers in model replies and whether two answers are the same.

The scoring layer that GRPO rewards (:mod:`swiftkit.train.rewards`) and benchmark evaluators
(:mod:`swiftkit.evaluate`) share:

* finding the answer: :func:`extract_answer` (math replies: boxed, ``<answer>``, ``#### X``, "the
  answer is X", the last number), :func:`extract_gsm8k`, :func:`extract_boxed`,
  :func:`extract_option_letter` (multiple choice), :func:`extract_regex`; and in references:
  :func:`solution_answer`, :func:`gsm8k_reference`;
* comparing answers: :func:`answers_match` is the one "are these the same answer" test: numbers by
  exact value (``"1,000"``, ``"1000.0"``, ``"1/2"``, ``"\\frac{1}{2}"``, ``"$5"``, ``"5 dollars"``),
  anything else as LaTeX-normalised, case-folded text without spaces. :func:`numbers_equal` compares
  numbers only, within a relative tolerance.

A percentage compares as its number everywhere here: ``"50%"`` equals ``"50"``, not ``"0.5"``
(benchmark references write the number the question asks for, and a reply adding the ``%`` sign
should not lose the point).
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from fractions import Fraction

from swiftkit.core.errors import ConfigError

# --- finding the final answer ------------------------------------------------------------------

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_GSM8K = re.compile(r"####\s*([^\n]*\S)")
_PHRASE = re.compile(r"(?:final answer|the answer)(?:\s+is)?\s*[:=]?\s*([^\n]+)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?=\s|$)")
_NUMBER_IN_TEXT = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


def _last_braced(text: str, command: str) -> tuple[int, str] | None:
    r"""Where the last complete ``\command{...}`` (or ``\command x``) starts, and its argument
    (nested braces kept); ``None`` when there is none."""
    start = text.rfind("\\" + command)
    while start != -1:
        i = start + len(command) + 1
        rest = text[i:]
        if rest.lstrip().startswith("{"):
            i += len(rest) - len(rest.lstrip())
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return start, text[i + 1:j]
        elif match := re.match(r" +([^\s$]+)", rest):  # \boxed 5
            return start, match.group(1)
        start = text.rfind("\\" + command, 0, start)  # truncated box: try the one before
    return None


def extract_boxed(text: str) -> str | None:
    r"""The argument of the last complete ``\boxed{...}`` or ``\fbox{...}`` in ``text`` (nested
    braces kept, ``\boxed 5`` read as ``5``), or ``None`` when there is none. A box cut off before
    its closing brace is skipped."""
    found = [box for box in (_last_braced(text, "boxed"), _last_braced(text, "fbox")) if box is not None]
    return max(found)[1] if found else None


def _tagged_answer(text: str) -> str | None:
    """The answer a text marks explicitly: last ``\\boxed{}``, ``<answer>`` or GSM8K ``#### X``."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    for pattern in (_ANSWER_TAG, _GSM8K):
        found = pattern.findall(text)
        if found:
            return found[-1]
    return None


def extract_answer(reply: str) -> str | None:
    """The final answer of a model reply, or ``None`` when it gives none.

    Tried in order: the last ``\\boxed{...}``, the last ``<answer>...</answer>``, a GSM8K
    ``#### X`` line, the last "the answer is X" / "final answer: X" (up to the end of that
    sentence), the last number in the text.
    """
    tagged = _tagged_answer(reply)
    if tagged is not None:
        return tagged
    phrases = _PHRASE.findall(reply)
    if phrases:
        candidate = phrases[-1]
        while inner := _PHRASE.search(candidate):  # "Final answer: the answer is 5"
            candidate = inner.group(1)
        candidate = _SENTENCE_END.split(candidate, maxsplit=1)[0].strip(" *")
        if candidate:
            return candidate
    numbers_found = _NUMBER_IN_TEXT.findall(reply.replace("\u2212", "-"))
    return numbers_found[-1] if numbers_found else None


def solution_answer(solution) -> str:
    """The reference answer in a ``solution`` cell: plain (``"42"``), boxed, or a GSM8K rationale."""
    text = str(solution)
    tagged = _tagged_answer(text)
    return text if tagged is None else tagged


# --- comparing answers -------------------------------------------------------------------------

_PLAIN = r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?"
_FRAC = re.compile(r"(-?)\\frac\s*(?:\{([^{}]+)\}|(\d))\s*(?:\{([^{}]+)\}|(\d))")
_SLASH = re.compile(rf"({_PLAIN})\s*/\s*({_PLAIN})")
_WITH_UNIT = re.compile(rf"({_PLAIN})\s*[a-z]{{2,}}(?:\s+[a-z]{{2,}})*", re.IGNORECASE)
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")


def _plain_number(text: str) -> Fraction | None:
    if re.fullmatch(_PLAIN, text, re.IGNORECASE):
        return Fraction(text.replace(",", "").lower())
    return None


def _number(text: str) -> Fraction | None:
    """The exact value of a number, decimal, fraction (``a/b``, ``\\frac{a}{b}``, ``\\frac12``),
    percentage (the ``%`` is dropped) or number followed by unit words; ``None`` otherwise."""
    text = text.removesuffix("%").strip()
    if (value := _plain_number(text)) is not None:
        return value
    if frac := _FRAC.fullmatch(text):
        num, den = _number(frac.group(2) or frac.group(3)), _number(frac.group(4) or frac.group(5))
        if num is not None and den:
            return -num / den if frac.group(1) else num / den
        return None
    if slash := _SLASH.fullmatch(text):
        num, den = _plain_number(slash.group(1)), _plain_number(slash.group(2))
        return num / den if den else None
    if unit := _WITH_UNIT.fullmatch(text):
        return _plain_number(unit.group(1))
    return None


def canonical_answer(answer: str) -> Fraction | str:
    """An answer in comparable form: its exact value if it is a number, else lower-case text
    without spaces. LaTeX wrapping (``$``, ``\\(\\)``, ``\\text{}``, ``\\left``/``\\right``,
    spacing commands, ``^\\circ``), a leading ``x =`` and a trailing period are dropped first."""
    s = str(answer).replace("\u2212", "-").strip()
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", s)
    s = _TEXT_COMMAND.sub(r"\1", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "%").replace("{,}", ",")
    s = re.sub(r"\\[,;:! ]", "", s)
    s = re.sub(r"^\\[(\[]|\\[)\]]$", "", s.strip())
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\u00b0", "")
    s = s.strip().rstrip(".").strip()
    s = re.sub(r"^[a-zA-Z]\s*=\s*(?=\S)", "", s)
    value = _number(s)
    return value if value is not None else re.sub(r"\s+", "", s).lower()


def answers_match(answer: str | None, reference: str) -> bool:
    """Whether two final answers are the same: numbers by exact value, anything else as text."""
    if answer is None:
        return False
    return canonical_answer(answer) == canonical_answer(reference)




def numbers_equal(a: str, b: str, rel_tol: float = 1e-6) -> bool:
    """Whether ``a`` and ``b`` are both numbers (any form :func:`canonical_answer` reads: ``"1,000"``,
    ``"1000.0"``, ``"1/2"``, ``"\\frac{1}{2}"``, ``"$5"``, ``"50%"`` as 50, ``"3 apples"``) whose
    values differ by at most ``rel_tol`` of the larger one; ``False`` when either is not a number."""
    x, y = canonical_answer(a), canonical_answer(b)
    if not isinstance(x, Fraction) or not isinstance(y, Fraction):
        return False
    if x == y:
        return True
    try:
        return math.isclose(x, y, rel_tol=rel_tol)
    except OverflowError:  # beyond float range: only the exact comparison above can say yes
        return False


# --- benchmark answer formats ------------------------------------------------------------------

_MINUS = str.maketrans({"\u2212": "-"})


def _first_number(text: str) -> str | None:
    """The first number in ``text``, thousands separators dropped (``"1,500"`` -> ``"1500"``)."""
    found = _NUMBER_IN_TEXT.search(text.translate(_MINUS))
    return found.group(0).replace(",", "") if found else None


def gsm8k_reference(answer: str) -> str:
    """The final answer of a GSM8K reference solution: the text after its last ``####``, stripped,
    thousands separators dropped from a plain number (``"...\\n#### 1,200"`` -> ``"1200"``). A text
    without ``####`` is taken to be the answer itself."""
    text = str(answer)
    final = text.rsplit("####", 1)[-1].strip()
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", final):
        final = final.replace(",", "")
    return final


def extract_gsm8k(reply: str) -> str | None:
    """The final answer of a GSM8K-style reply, or ``None`` when it has no number.

    Tried in order: the last ``#### X`` line, the last ``\\boxed{X}``, the last "the answer is X" /
    "final answer: X" (its first number), the last number in the text. From ``####`` and "the
    answer is" lines the first number is taken (``"#### $1,500 in total"`` -> ``"1500"``), or the
    whole ``####`` line when it has none; numbers lose their thousands separators. A boxed answer is
    returned as written (``"\\frac{1}{2}"``): :func:`answers_match` reads its value.
    """
    marked = _GSM8K.findall(reply)
    if marked:
        return _first_number(marked[-1]) or marked[-1].strip()
    boxed = extract_boxed(reply)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    phrases = _PHRASE.findall(reply)
    if phrases and (number := _first_number(_SENTENCE_END.split(phrases[-1], maxsplit=1)[0])) is not None:
        return number
    numbers_found = _NUMBER_IN_TEXT.findall(reply.translate(_MINUS))
    return numbers_found[-1].replace(",", "") if numbers_found else None


# An explicit statement: "answer is (C)", "Answer: C", "**Answer:** C", "correct option is C",
# "答案：C", "答案是 C", "选择 C". Letters must be capitals; the keywords ignore case.
_OPENING_MARKUP = r"[\s*_(\[{【「]*"
_OPTION_STATED = re.compile(
    r"(?:(?i:answer|correct option|correct choice)[\s*_]*(?:(?i:is|would be|should be|will be)\b)?"
    r"|答案\s*(?:是|为|為|应为|應為|应该是|選|选)?|选择|選擇)"
    rf"[\s*_]*[:=]?{_OPENING_MARKUP}(?:(?i:option|choice)\s*)?[(\[]?([A-Z])(?![A-Za-z0-9])"
)
# A reply that opens with the letter: "B", "(B)", "B.", "B) because", "**D**", "[C]".
_OPTION_FIRST = re.compile(rf"{_OPENING_MARKUP}([A-Z])(?=[)\]}}】」.:,;、*]|\s*$|\s*\n)")
# "C is correct", "(C) is the right answer".
_OPTION_JUDGED = re.compile(r"(?<![A-Za-z0-9])([A-Z])[)\]*]*\s+is\s+(?:the\s+)?(?:correct|right)\b")
# Any letter standing alone: not part of a word, a number or a contraction ("I'm"), and not the
# words "A" / "I" running into the sentence ("A careful check", "I think").
_OPTION_ALONE = re.compile(r"(?<![A-Za-z0-9])(?:[B-HJ-Z]|[AI](?!\s+[a-z]))(?![A-Za-z0-9'])")


def extract_option_letter(reply: str, n_options: int) -> str | None:
    """The option a multiple-choice reply picks, as one of the first ``n_options`` capital letters,
    or ``None`` when it names none.

    Tried in order: the last explicit statement ("The answer is (C)", "Answer: B", "答案：C",
    "C is correct"), a letter the reply opens with ("B", "(B)", "B.", "**D**"), the last letter
    standing alone in the text (not the words "A" and "I" inside a sentence). Letters past
    ``n_options`` are ignored; full-width forms (``Ｃ``, ``（C）``) read as ASCII.
    """
    if not 1 <= n_options <= 26:
        raise ValueError(f"n_options must be between 1 and 26, got {n_options}")
    valid = string.ascii_uppercase[:n_options]
    text = unicodedata.normalize("NFKC", reply)
    stated = [m for m in _OPTION_STATED.finditer(text) if m.group(1) in valid]
    stated += [m for m in _OPTION_JUDGED.finditer(text) if m.group(1) in valid]
    if stated:
        return max(stated, key=lambda m: m.start()).group(1)
    first = _OPTION_FIRST.match(text)
    if first and first.group(1) in valid:
        return first.group(1)
    alone = [m.group(0) for m in _OPTION_ALONE.finditer(text) if m.group(0) in valid]
    return alone[-1] if alone else None


def extract_regex(reply: str, pattern: str | re.Pattern) -> str | None:
    """Group 1 of the last match of ``pattern`` in ``reply`` (the whole match when the pattern has
    no group), or ``None`` when it does not match. A bad pattern raises :class:`ConfigError`."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"answer pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    matches = list(compiled.finditer(reply))
    if not matches:
        return None
    return matches[-1].group(1) if compiled.groups else matches[-1].group(0)
