"""Built-in reward functions: the TRL GRPO calling contract, plain and conversational completions."""

import pytest

from swiftkit.plugins import build_registries, get_plugin_manager
from swiftkit.train.rewards import accuracy_reward, completion_text, format_reward


def test_format_reward():
    good = "<think>2 + 2 is 4</think>\n<answer>4</answer>"
    assert format_reward(["q"] * 4, [good, "4", "<answer>4</answer>", good + " extra"]) == [1.0, 0.0, 0.0, 0.0]


def test_accuracy_reward_normalises_answers():
    completions = ["<think>..</think><answer> 1,000 </answer>", "The answer is 3.0", "Paris.",
                   [{"role": "assistant", "content": "<answer>7</answer>"}]]
    solution = ["1000", "3", "paris", "8"]
    assert accuracy_reward(["q"] * 4, completions, solution=solution) == [1.0, 0.0, 1.0, 0.0]
    assert accuracy_reward(["q"], ["3.0"], solution=["3"]) == [1.0]


def test_accuracy_reward_needs_solution_and_matching_lengths():
    with pytest.raises(ValueError, match="solution"):
        accuracy_reward(["q"], ["a"])
    with pytest.raises(ValueError):
        accuracy_reward(["q", "q"], ["a", "b"], solution=["a"])


def test_completion_text_rejects_other_shapes():
    assert completion_text([{"role": "assistant", "content": "hi"}]) == "hi"
    with pytest.raises(TypeError):
        completion_text(42)


def test_rewards_are_registered_through_the_hook_and_plugins_add_their_own(tmp_path):
    plugin = tmp_path / "brevity.py"
    plugin.write_text(
        "import swiftkit\n"
        "def brevity(prompts, completions, **columns):\n"
        "    return [-len(c) / 100 for c in completions]\n"
        "@swiftkit.hookimpl\n"
        "def swiftkit_register_reward_funcs(registry):\n"
        "    registry.register('brevity', brevity, source='brevity.py')\n"
    )
    regs = build_registries(get_plugin_manager([str(plugin)], entry_points=False))
    assert {"format", "accuracy", "brevity"} <= set(regs.rewards)
    assert regs.rewards.get("brevity")(["q"], ["abcd"]) == [-0.04]
