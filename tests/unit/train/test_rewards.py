"""Reward functions: math answer extraction and comparison, the built-ins, selection by name,
checked return values, and rewards added by a plugin file."""

import asyncio
import math
import textwrap
from fractions import Fraction

import pytest
from hosts import builtin_host

from swiftkit.config import ConfigError, RlhfConfig
from swiftkit.core.choices import ChoiceError
from swiftkit.core.plugins import PluginError
from swiftkit.core.registry import Registry
from swiftkit.train.errors import TrainError
from swiftkit.train.rewards import (
    BUILTIN_REWARDS,
    accuracy_reward,
    answers_match,
    canonical_answer,
    completion_text,
    extract_answer,
    resolve_reward_funcs,
    solution_answer,
)


def grpo_config(**flags):
    values = {"model": "m", "dataset": ["d"], "rlhf_type": "grpo", "reward_funcs": ["accuracy"],
              "num_generations": 2, "per_device_train_batch_size": 2, **flags}
    return RlhfConfig.from_flat(values)


@pytest.fixture(scope="module")
def registries():
    return builtin_host().registries


# --- answer extraction -------------------------------------------------------------------------

@pytest.mark.parametrize("reply, answer", [
    ("so the result is \\boxed{42}.", "42"),
    ("first \\boxed{3}, corrected: \\boxed{5}", "5"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
    ("$\\boxed{\\text{(B)}}$", "\\text{(B)}"),
    ("\\boxed 7$", "7"),
    ("\\boxed{3} and then a truncated \\boxed{\\frac{1}{2", "3"),
    ("\\fbox{9}", "9"),
    ("<think>2+2</think><answer>4</answer>", "4"),
    ("<answer>1</answer> no wait <answer>2</answer>", "2"),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
    ("Therefore, the answer is 18.", "18"),
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "$\\frac{3}{4}$"),
    ("final answer: **-3**", "-3"),
    ("the answer is 3.5 hours. Next question.", "3.5 hours"),
    ("It costs 3 dollars, then 12 more, total 1,500", "1,500"),
    ("x went from 3 to \u22124", "-4"),
    ("half of it: 1/2", "1/2"),
    ("I do not know.", None),
    ("", None),
])
def test_extract_answer(reply, answer):
    assert extract_answer(reply) == answer


@pytest.mark.parametrize("solution, answer", [
    ("42", "42"),
    (42, "42"),
    ("Janet has 16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18", "18"),
    ("The area is $\\boxed{\\dfrac{\\pi}{4}}$.", "\\dfrac{\\pi}{4}"),
])
def test_solution_answer(solution, answer):
    assert solution_answer(solution) == answer


# --- answer comparison -------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    ("3", "3.0"),
    ("3,000", "3000"),
    ("1,234,567.50", "1234567.5"),
    ("1/2", "0.5"),
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac12", "1/2"),
    ("\\tfrac{3}{4}", ".75"),
    ("-\\frac{1}{2}", "-0.5"),
    ("\\frac{-1}{2}", "-1/2"),
    ("$-7$", "-7"),
    ("\u22127", "-7"),
    ("+5", "5"),
    ("50%", "50"),
    ("50\\%", "50"),
    ("\\$18.00", "18"),
    ("18 dollars", "18"),
    ("5\\text{ cm}", "5"),
    ("90^\\circ", "90"),
    ("x = 5", "5"),
    ("7.", "7"),
    ("1e3", "1000"),
    ("1{,}000", "1000"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("\\text{Paris}", "paris"),
    ("New York.", "new york"),
    ("\\(\\sqrt{2}\\)", "\\sqrt{2}"),
])
def test_answers_match(a, b):
    assert answers_match(a, b)
    assert answers_match(b, a)


@pytest.mark.parametrize("a, b", [
    ("3", "4"),
    ("-3", "3"),
    ("0.33", "1/3"),
    ("50%", "0.5"),          # a percentage compares as its number, not as a ratio
    ("3x", "3"),             # one letter after a number is algebra, not a unit
    ("1,2", "12"),           # not a thousands separator
    ("\\frac{1}{0}", "0"),
    ("Paris", "London"),
    (None, "3"),
])
def test_answers_differ(a, b):
    assert not answers_match(a, b)


def test_canonical_answer_is_exact_for_numbers_and_spaceless_text():
    assert canonical_answer("0.1") == Fraction(1, 10)
    assert canonical_answer(" (1, 2) ") == "(1,2)"


# --- accuracy ----------------------------------------------------------------------------------

def test_accuracy_reward_scores_each_reply_against_its_solution():
    completions = [
        "<think>..</think><answer> 1,000 </answer>",
        "The answer is 3.0",
        "so \\boxed{\\frac{1}{2}}",
        [{"role": "assistant", "content": "<answer>7</answer>"}],
        "I give up.",
        "Step 1: 4 + 5 = 9. Step 2: 9 * 2 = 18",
    ]
    solution = ["1000", "3", "0.5", "8", "4", "Janet gets 9 * 2 = 18 dollars.\n#### 18"]
    assert accuracy_reward(["q"] * 6, completions, solution=solution) == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]


def test_accuracy_reward_names_the_missing_solution_column():
    with pytest.raises(TrainError, match="'solution' column"):
        accuracy_reward(["q"], ["a"])
    with pytest.raises(TrainError, match="row 1"):
        accuracy_reward(["q", "q"], ["1", "2"], solution=["1", None])
    with pytest.raises(TrainError, match="2 'solution' values for 1"):
        accuracy_reward(["q"], ["a"], solution=["a", "b"])


def test_completion_text_rejects_other_shapes():
    assert completion_text([{"role": "assistant", "content": "hi"}]) == "hi"
    with pytest.raises(TypeError):
        completion_text(42)


# --- format and length (configured by the run's flags) ----------------------------------------

def test_format_reward_default_pattern(registries):
    [fmt] = resolve_reward_funcs(registries.rewards, ["format"], grpo_config(reward_funcs=["format"]))
    good = "<think>2 + 2 is 4</think>\n<answer>4</answer>\n"
    replies = [good, "4", "<answer>4</answer>", good + " extra", [{"role": "assistant", "content": good}]]
    assert fmt(["q"] * 5, replies) == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_format_reward_custom_pattern_must_match_the_whole_reply(registries):
    config = grpo_config(reward_funcs=["format"], format_pattern=r"Answer: \d+")
    [fmt] = resolve_reward_funcs(registries.rewards, ["format"], config)
    assert fmt(["q"] * 3, ["Answer: 12", "Answer: 12 apples", "So.\nAnswer: 12"]) == [1.0, 0.0, 0.0]
    dotall = grpo_config(reward_funcs=["format"], format_pattern=r"<r>.*</r>")
    [fmt] = resolve_reward_funcs(registries.rewards, ["format"], dotall)
    assert fmt(["q"], ["<r>line 1\nline 2</r>"]) == [1.0]


def test_format_reward_rejects_a_bad_pattern(registries):
    with pytest.raises(ConfigError, match="--format_pattern"):
        resolve_reward_funcs(registries.rewards, ["format"], grpo_config(format_pattern="(unclosed"))


def test_length_reward_is_zero_then_falls_to_minus_one(registries):
    [length] = resolve_reward_funcs(registries.rewards, ["length"], grpo_config(max_completion_length=100))
    ids = [[0] * n for n in (0, 75, 76, 90, 100, 130)]   # buffer 25: penalty starts after 75 tokens
    scores = length(["q"] * 6, ["x"] * 6, completion_ids=ids)
    assert scores[:2] == [0.0, 0.0]
    assert scores[2] == pytest.approx(-1 / 25)
    assert scores[3] == pytest.approx(-15 / 25)
    assert scores[4:] == [-1.0, -1.0]


def test_length_reward_counts_words_without_completion_ids(registries):
    [length] = resolve_reward_funcs(registries.rewards, ["length"], grpo_config(max_completion_length=8))
    assert length(["q"] * 3, ["a b c d e f", "a b c d e f g", "  ".join("w" * 9)]) == [0.0, -0.5, -1.0]
    [tiny] = resolve_reward_funcs(registries.rewards, ["length"], grpo_config(max_completion_length=2))
    assert tiny(["q"] * 3, ["", "a", "a b"]) == [0.0, 0.0, -1.0]   # buffer is at least one token


def test_configured_rewards_use_flag_defaults_without_a_config(registries):
    fmt, length = resolve_reward_funcs(registries.rewards, ["format", "length"])
    assert fmt(["q"], ["<think>a</think><answer>b</answer>"]) == [1.0]
    assert length(["q"], ["x"], completion_ids=[[1] * 256]) == [-1.0]


# --- selection and checks ----------------------------------------------------------------------

def test_resolved_rewards_carry_their_registered_names(registries):
    funcs = resolve_reward_funcs(registries.rewards, ["Accuracy", "format", "length"], grpo_config())
    assert [f.__name__ for f in funcs] == ["accuracy", "format", "length"]
    assert funcs[0](prompts=["q"], completions=["\\boxed{2}"], completion_ids=[[1]], trainer_state=None,
                    solution=["2"]) == [1.0]


def test_resolved_rewards_fit_trls_naming_and_async_detection(registries):
    from trl.trainer.utils import get_callable_name, is_async_callable

    async def judge(prompts, completions, **columns):
        return [0.5 for _ in completions]

    reg = Registry("reward")
    reg.register("judge", judge, source="test")
    [acc] = resolve_reward_funcs(registries.rewards, ["accuracy"], grpo_config())
    [checked_judge] = resolve_reward_funcs(reg, ["judge"], None)
    assert get_callable_name(acc) == "accuracy" and not is_async_callable(acc)
    assert get_callable_name(checked_judge) == "judge" and is_async_callable(checked_judge)
    assert asyncio.run(checked_judge(["q", "q"], ["a", "b"])) == [0.5, 0.5]


def test_unknown_reward_lists_valid_names_and_the_closest(registries):
    with pytest.raises(ChoiceError) as err:
        resolve_reward_funcs(registries.rewards, ["acuracy"], grpo_config())
    message = str(err.value)
    assert "unknown --reward_funcs 'acuracy' (did you mean 'accuracy'?)" in message
    assert "accuracy, format, length" in message


def test_a_reward_given_twice_is_an_error(registries):
    with pytest.raises(ChoiceError, match="twice"):
        resolve_reward_funcs(registries.rewards, ["format", "FORMAT"], grpo_config())


class _Scaled:
    """A factory reward: its scale comes from the config."""

    def __init__(self, config):
        self.scale = config.rollout.max_completion_length

    def __call__(self, prompts, completions, **columns):
        return [self.scale * len(c) for c in completions]


def test_a_class_entry_is_a_factory_called_with_the_config():
    reg = Registry("reward")
    reg.register("scaled", _Scaled, source="test")
    [fn] = resolve_reward_funcs(reg, ["scaled"], grpo_config(max_completion_length=10))
    assert fn.__name__ == "scaled"
    assert fn(["q", "q"], ["ab", "abc"]) == [20.0, 30.0]


def test_an_entry_that_is_not_callable_is_a_plugin_error():
    reg = Registry("reward")
    reg.register("oops", 3.0, source="my_plugin")
    with pytest.raises(PluginError, match="'oops' \\(plugin 'my_plugin'\\) is a float"):
        resolve_reward_funcs(reg, ["oops"], None)


@pytest.mark.parametrize("returned, message", [
    (0.5, "returned a float \\(0.5\\)"),
    ([1.0], "returned 1 scores for 2 completions"),
    ([1.0, "high"], "returned 'high' \\(str\\) for completion 1"),
    ([1.0, math.nan], "returned nan for completion 1"),
    ([math.inf, 1.0], "returned inf for completion 0"),
])
def test_a_bad_return_names_the_reward_and_the_value(returned, message):
    reg = Registry("reward")
    reg.register("bad", lambda prompts, completions, **columns: returned, source="test")
    [fn] = resolve_reward_funcs(reg, ["bad"], None)
    with pytest.raises(TrainError, match=f"reward function 'bad' {message}"):
        fn(["q", "q"], ["a", "b"])


def test_none_means_not_applicable_and_numbers_become_floats():
    reg = Registry("reward")
    reg.register("some", lambda prompts, completions, **columns: [None, 1, True], source="test")
    [fn] = resolve_reward_funcs(reg, ["some"], None)
    assert fn(["q"] * 3, ["a", "b", "c"]) == [None, 1.0, 1.0]


def test_an_error_inside_a_reward_names_the_reward_and_its_plugin(registries):
    [acc] = resolve_reward_funcs(registries.rewards, ["accuracy"], grpo_config())
    with pytest.raises(TrainError, match="the accuracy reward needs a 'solution' column"):
        acc(["q"], ["1"])  # a swiftkit error explains itself and passes through
    reg = Registry("reward")
    reg.register("crash", lambda prompts, completions, **columns: 1 / 0, source="crash.py")
    [crash] = resolve_reward_funcs(reg, ["crash"], None, describe=lambda plugin: f"plugin {plugin!r} (package p)")
    with pytest.raises(PluginError, match="^plugin 'crash.py' \\(package p\\) failed in reward function 'crash': "
                                          "ZeroDivisionError: division by zero$"):
        crash(["q"], ["a"])


# --- plugins -----------------------------------------------------------------------------------

def test_a_plugin_file_adds_a_reward_that_lists_and_resolves(tmp_path, capsys):
    from swiftkit.cli.listing import list_command

    plugin = tmp_path / "brevity.py"
    plugin.write_text(textwrap.dedent("""
        import swiftkit

        def brevity(prompts, completions, **columns):
            '''Shorter replies score higher.'''
            return [-len(c) / 100 for c in completions]

        class Keyword:
            '''1.0 when the reply contains the first rlhf reward name.'''
            def __init__(self, config):
                self.word = config.grpo.reward_funcs[0]
            def __call__(self, prompts, completions, **columns):
                return [float(self.word in c) for c in completions]

        @swiftkit.hookimpl
        def swiftkit_register_reward_funcs(registry):
            registry.register("brevity", brevity, source="brevity.py")
            registry.register("keyword", Keyword, source="brevity.py")
    """))
    regs = builtin_host([str(plugin)]).registries
    assert {"accuracy", "format", "length", "brevity", "keyword"} <= set(regs.rewards)
    config = grpo_config(reward_funcs=["brevity", "keyword"], reward_weights=[1.0, 0.5])
    brevity, keyword = resolve_reward_funcs(regs.rewards, config.grpo.reward_funcs, config)
    assert brevity(["q"], ["abcd"]) == [-0.04]
    assert keyword(["q", "q"], ["brevity wins", "no"]) == [1.0, 0.0]

    assert list_command(["rewards", "--plugins", str(plugin)]) == 0
    listing = capsys.readouterr().out
    assert "brevity.py: Shorter replies score higher." in listing
    assert "length" in listing and "--max_completion_length" in listing


def test_builtins_are_the_documented_three():
    assert set(BUILTIN_REWARDS) == {"accuracy", "format", "length"}


def test_a_factory_reward_reads_its_plugins_own_flag(tmp_path):
    from swiftkit.cli.args import config_and_host
    from swiftkit.commands import COMMANDS

    plugin = tmp_path / "my_rewards.py"
    plugin.write_text(textwrap.dedent('''
        import swiftkit
        from swiftkit.config.plugin_fields import PluginField
        from swiftkit.train.rewards import completion_text

        class Keyword:
            """1.0 when the reply contains --keyword."""
            def __init__(self, config):
                self.word = config.plugin_options["keyword"]
            def __call__(self, prompts, completions, **columns):
                return [float(self.word in completion_text(c)) for c in completions]

        @swiftkit.hookimpl
        def swiftkit_add_config_fields(command):
            return [PluginField("keyword", str, "because", "Word the reward looks for.", commands=("rlhf",))]

        @swiftkit.hookimpl
        def swiftkit_register_reward_funcs(registry):
            registry.register("keyword", Keyword, source="my_rewards.py")
    '''))
    config, host = config_and_host(COMMANDS["rlhf"], [
        "--plugins", str(plugin), "--model", "m", "--dataset", "d", "--rlhf_type", "grpo",
        "--num_generations", "2", "--per_device_train_batch_size", "2",
        "--reward_funcs", "accuracy", "keyword", "--reward_weights", "1", "0.5", "--keyword", "therefore",
    ])
    accuracy, keyword = resolve_reward_funcs(host.registries.rewards, config.grpo.reward_funcs, config)
    replies = ["therefore \\boxed{4}", [{"role": "assistant", "content": "because 5"}]]
    assert keyword(["q", "q"], replies) == [1.0, 0.0]
    assert accuracy(["q", "q"], replies, solution=["4", "4"]) == [1.0, 0.0]


def test_trls_grpo_trainer_calls_the_resolved_rewards(tmp_path, registries):
    """One real GRPO step on a tiny model: TRL's calling convention reaches our rewards."""
    import torch
    from datasets import Dataset
    from tiny import make_tiny_model, make_tokenizer
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(1)
    config = grpo_config(reward_funcs=["accuracy", "format", "length"], max_completion_length=8)
    funcs = resolve_reward_funcs(registries.rewards, config.grpo.reward_funcs, config)
    seen = {}

    def spy(prompts, completions, **columns):
        seen.update(columns, completions=completions)
        return [None] * len(completions)

    rows = [{"prompt": [{"role": "user", "content": "What is 2+2?"}], "solution": "#### 4"}] * 2
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=8, max_steps=1, logging_steps=1, report_to=[], use_cpu=True,
                      save_strategy="no")
    trainer = GRPOTrainer(model=make_tiny_model(), reward_funcs=[*funcs, spy], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=make_tokenizer())
    trainer.train()
    assert {"completion_ids", "trainer_state", "solution"} <= set(seen)
    assert seen["solution"] == ["#### 4", "#### 4"]
    logged = trainer.state.log_history[0]
    replies = seen["completions"]
    assert isinstance(replies[0], list)  # conversational prompts give message-list completions
    assert logged["rewards/accuracy/mean"] == pytest.approx(
        sum(accuracy_reward(["q"] * 2, replies, solution=["4", "4"])) / 2)
    assert logged["rewards/format/mean"] == pytest.approx(sum(funcs[1](["q"] * 2, replies)) / 2)
    lengths = [len(ids) for ids in seen["completion_ids"]]
    expected = sum(0.0 if n <= 6 else -min(1.0, (n - 6) / 2) for n in lengths) / len(lengths)
    assert logged["rewards/length/mean"] == pytest.approx(expected)
