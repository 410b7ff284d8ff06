"""Choosing parts by name through firstresult hooks; unknown names list the valid ones."""

from __future__ import annotations

import textwrap

import pytest
from hosts import builtin_host

from swiftkit.core.choices import CHOICES, ChoiceError, choice_names, choose, names_by_plugin, unknown_choice


def _plugin_file(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("import swiftkit\n" + textwrap.dedent(body), encoding="utf-8")
    return str(path)


@pytest.fixture
def two_loss_plugins(tmp_path):
    first = _plugin_file(tmp_path, "first.py", """
        @swiftkit.hookimpl
        def swiftkit_choice_names(kind):
            return ["alpha", "shared"] if kind == "loss" else []

        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            return {"alpha": "first-alpha", "shared": "first-shared"}.get(name)
    """)
    second = _plugin_file(tmp_path, "second.py", """
        @swiftkit.hookimpl
        def swiftkit_choice_names(kind):
            return ["beta", "shared"] if kind == "loss" else []

        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            return {"beta": "second-beta", "shared": "second-shared"}.get(name)
    """)
    return builtin_host([first, second])


def test_builtin_parts_declare_their_names():
    host = builtin_host()
    assert choice_names(host, "tuner") == ["adalora", "boft", "freeze", "full", "ia3", "llamapro", "loha", "lokr",
                                           "longlora", "lora", "qlora", "reft", "vera"]  # longlora, reft: refused
    assert choice_names(host, "trainer") == ["default"]
    assert choice_names(host, "loss") == ["cross_entropy"]
    assert choice_names(host, "infer_engine") == ["transformers", "vllm"]
    benchmarks = choice_names(host, "eval_benchmark")  # qa and every shipped benchmark card
    assert "qa" in benchmarks and {"mmlu", "gsm8k", "general_mcq", "humaneval"} <= set(benchmarks)
    assert choice_names(host, "export_format") == ["awq", "bnb", "gguf", "gptq", "merged", "torchao"]
    assert {"linear", "cosine", "constant"} <= set(choice_names(host, "lr_scheduler"))
    assert choice_names(host, "optimizer") == ["galore", "lorap"]
    assert {"early_stop", "neftune", "graceful_exit", "perf_log", "save_best", "lisa"} <= set(choice_names(host, "callback"))
    assert {"acc", "rouge-l", "bleu"} <= set(choice_names(host, "metrics"))
    with pytest.raises(KeyError, match="unknown choice kind 'losses'"):
        choice_names(host, "losses")


def test_choose_selects_by_name_and_a_later_plugin_answers_first(two_loss_plugins):
    host = two_loss_plugins
    assert choose(host, "loss", "alpha", config=None) == "first-alpha"
    assert choose(host, "loss", "beta", config=None) == "second-beta"
    # firstresult: pluggy calls the plugin registered last first, so the later file wins a shared name
    assert choose(host, "loss", "shared", config=None) == "second-shared"
    assert choice_names(host, "loss") == ["alpha", "beta", "cross_entropy", "shared"]


def test_unknown_name_lists_every_valid_one_and_the_closest(two_loss_plugins):
    with pytest.raises(ChoiceError) as err:
        choose(two_loss_plugins, "loss", "alpah", config=None)
    msg = str(err.value)
    assert msg.startswith("unknown --loss_type 'alpah'")
    assert "did you mean 'alpha'" in msg
    assert msg.endswith("valid --loss_type values: alpha, beta, cross_entropy, shared")


def test_unknown_name_with_no_declared_names_says_who_implements_the_hook(tmp_path):
    silent = _plugin_file(tmp_path, "silent.py", """
        @swiftkit.hookimpl
        def swiftkit_get_optimizer(name, model, config):
            return None
    """)
    host = builtin_host([silent], disabled=["swiftkit.train.plugin"])  # its built-in optimizers left out
    msg = str(unknown_choice(host, "optimizer", "lion"))
    assert msg.startswith("unknown --optimizer 'lion'; valid --optimizer values: none")
    assert f"implemented by: file:{silent}" in msg
    no_train = builtin_host(disabled=["swiftkit.train.plugin"])
    assert "no plugin implements swiftkit_get_callback" in str(unknown_choice(no_train, "callback", "x"))


def test_names_by_plugin_groups_declarations_per_plugin(two_loss_plugins):
    by_plugin = names_by_plugin(two_loss_plugins)
    files = {name: kinds for name, kinds in by_plugin.items() if name.startswith("file:")}
    assert sorted(files.values(), key=str) == [{"loss": ["alpha", "shared"]}, {"loss": ["beta", "shared"]}]
    assert by_plugin["swiftkit.exporters.plugin"] == {"export_format": ["awq", "bnb", "gguf", "gptq", "merged",
                                                                        "torchao"]}


def test_every_choice_kind_names_a_real_firstresult_hook():
    from swiftkit.core import hookspecs

    for kind, (hook, flag) in CHOICES.items():
        spec = getattr(hookspecs, hook)
        assert spec.swiftkit_spec.get("firstresult"), hook
        assert flag.startswith("--"), kind
