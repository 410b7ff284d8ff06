"""Answer extraction for benchmark formats (GSM8K, boxed, multiple choice, regex) and number
equivalence. The math extraction and comparison shared with GRPO rewards is covered in
tests/unit/train/test_rewards.py, through the names swiftkit.train.rewards re-exports."""

import pytest

from swiftkit.core.errors import ConfigError
from swiftkit.data import answers
from swiftkit.data.answers import (
    answers_match,
    extract_boxed,
    extract_gsm8k,
    extract_option_letter,
    extract_regex,
    gsm8k_reference,
    numbers_equal,
)
from swiftkit.train import rewards


def test_rewards_still_exports_the_moved_functions():
    for name in ("extract_answer", "solution_answer", "canonical_answer", "answers_match"):
        assert getattr(rewards, name) is getattr(answers, name)


# --- GSM8K ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("solution, answer", [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),
    ("It costs 1,000 + 200.\n#### 1,200", "1200"),
    ("a #### 3 first, then\n####  -5 ", "-5"),
    ("7", "7"),                               # already a bare answer
])
def test_gsm8k_reference(solution, answer):
    assert gsm8k_reference(solution) == answer


@pytest.mark.parametrize("reply, answer", [
    ("4 + 5 = 9, 9 * 2 = 18\n#### 18", "18"),
    ("#### $1,500 in total", "1500"),         # first number of the #### line, separators dropped
    ("#### eighteen", "eighteen"),            # no number: the line as written
    ("so the total is \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("The answer is $18. That took 5 steps.", "18"),
    ("The answer is 18 because 3 + 15 = 18.", "18"),
    ("The answer is 3.5.", "3.5"),
    ("The answer is unknown. I counted 4 and 7.", "7"),   # phrase without a number: last number
    ("Then 1,234 - 4 = 1,230", "1230"),
    ("it drops to \u22123", "-3"),
    ("no digits here", None),
    ("", None),
])
def test_extract_gsm8k(reply, answer):
    assert extract_gsm8k(reply) == answer


def test_gsm8k_reply_and_reference_match_through_answers_match():
    reference = gsm8k_reference("Janet gets 9 * 2 = 18 dollars.\n#### 18")
    assert answers_match(extract_gsm8k("She makes $18.00 every day.\n#### $18.00"), reference)
    assert answers_match(extract_gsm8k("\\boxed{18 \\text{ dollars}}"), reference)
    assert not answers_match(extract_gsm8k("The answer is 17."), reference)


# --- boxed ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, answer", [
    ("\\boxed{42}", "42"),
    ("\\boxed{1} then \\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}"),    # last one, nested braces kept
    ("\\boxed{1} then \\fbox{2}", "2"),
    ("\\fbox{1} then \\boxed{{2}}", "{2}"),
    ("\\boxed{7} and a truncated \\boxed{\\frac{1}{2", "7"),
    ("\\boxed 5", "5"),
    ("no box", None),
])
def test_extract_boxed(text, answer):
    assert extract_boxed(text) == answer


# --- multiple choice -----------------------------------------------------------------------------

@pytest.mark.parametrize("reply, letter", [
    ("B", "B"),
    ("(B)", "B"),
    ("B.", "B"),
    ("B) because the others are wrong", "B"),
    ("**D**", "D"),
    ("[C]", "C"),
    ("Answer: B", "B"),
    ("**Answer:** B", "B"),
    ("answer: option B", "B"),
    ("The answer is (C) because A is wrong.", "C"),
    ("A looks tempting, but the correct option is D.", "D"),
    ("Option A is correct.", "A"),
    ("The answer is B. Checking again: Answer: C", "C"),   # the last explicit statement wins
    ("答案：C", "C"),
    ("答案是Ｃ", "C"),                                        # full-width letter
    ("选项A不对，所以选择（B）", "B"),
    ("I think C is right. A careful check agrees.", "C"),   # "A" running into a sentence is a word
    ("I'd go with C", "C"),
    ("A", "A"),
])
def test_extract_option_letter(reply, letter):
    assert extract_option_letter(reply, 4) == letter


def test_extract_option_letter_ignores_letters_past_the_options():
    assert extract_option_letter("Answer: E", 4) is None
    assert extract_option_letter("Answer: E", 5) == "E"
    assert extract_option_letter("Answer: E. So B", 4) == "B"
    assert extract_option_letter("The answer is a number.", 4) is None   # lower case is not a letter choice
    assert extract_option_letter("A dog ran.", 4) is None
    assert extract_option_letter("", 4) is None
    with pytest.raises(ValueError, match="n_options"):
        extract_option_letter("A", 0)


# --- regex ---------------------------------------------------------------------------------------

def test_extract_regex_takes_the_last_match():
    assert extract_regex("score=1, then score=2", r"score=(\d)") == "2"
    assert extract_regex("score=1, then score=2", r"score=\d") == "score=2"   # no group: whole match
    assert extract_regex("nothing", r"score=(\d)") is None
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        extract_regex("x", "(unclosed")


# --- numbers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    ("1,000", "1000.0"),
    ("1/2", "0.5"),
    ("\\frac{1}{2}", ".5"),
    ("$5", "5"),
    ("50%", "50"),                 # a percentage is its number (documented in the module)
    ("3 apples", "3"),
    ("1000000", "1000000.5"),      # |diff| / max = 5e-7 <= 1e-6
])
def test_numbers_equal(a, b):
    assert numbers_equal(a, b) and numbers_equal(b, a)


@pytest.mark.parametrize("a, b", [
    ("1000", "1000.5"),            # 5e-4 relative
    ("0.33", "1/3"),
    ("50%", "0.5"),
    ("abc", "abc"),                # not numbers
    ("5", "five"),
    ("1e400", "2e400"),            # beyond float range: only exact equality counts
])
def test_numbers_differ(a, b):
    assert not numbers_equal(a, b)


def test_numbers_equal_tolerance_and_exact_answers_match():
    assert numbers_equal("1.0", "1.01", rel_tol=0.01)        # 0.01 / 1.01 < 0.01
    assert not numbers_equal("1.0", "1.02", rel_tol=0.01)    # 0.02 / 1.02 > 0.01
    assert numbers_equal("1e400", "1e400")
    assert not answers_match("1000000", "1000000.5")         # answers_match compares exact values
