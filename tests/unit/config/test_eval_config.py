"""`swiftkit eval`'s flags and the training-time benchmark flags: what combines and what is refused, with why."""

import pytest

from swiftkit.config import ConfigError, EvalConfig, RlhfConfig, SftConfig
from swiftkit.config.evaluation import benchmark_spec


def _eval(**flags):
    return EvalConfig.from_flat({"eval_dataset": ["mmlu"], **flags})


@pytest.mark.parametrize("flags, message", [
    ({"eval_url": "http://h:1", "model": "m"}, "--eval_url evaluates a running server; --model/--adapters"),
    ({"model": "m", "api_key": "k"}, "--api_key is sent to --eval_url"),
    ({"model": "m", "eval_model": "x"}, "--eval_model names a model of --eval_url"),
    ({"eval_url": "ftp://h"}, "--eval_url must start with http:// or https://"),
    ({"model": "m", "compare": ["base"]}, "--compare base compares --adapters with their base model"),
    ({"eval_url": "http://h:1", "compare": ["base"]}, "--compare evaluates local models"),
    ({"model": "m", "eval_dataset": ["=x.jsonl"]}, "a benchmark name is missing before '='"),
    ({"model": "m", "eval_dataset": ["mmlu="]}, "the path after '=' is empty"),
    ({"model": "m", "extra_eval_args": "{}"}, "--extra_eval_args is passed to evalscope"),
    ({"model": "m", "eval_dataset_args": "[1]"}, "--eval_dataset_args must be a JSON object"),
])
def test_eval_flag_combinations_are_refused_with_the_reason(flags, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _eval(**flags)


def test_eval_url_needs_no_model_and_names_are_parsed():
    cfg = _eval(eval_url="http://127.0.0.1:8000", eval_model="tiny", api_key="k",
                eval_dataset=["gsm8k=data/g.jsonl", "mmlu"])
    assert cfg.eval.eval_url == "http://127.0.0.1:8000" and cfg.model.model is None
    assert [benchmark_spec(s) for s in cfg.eval.eval_dataset] == [("gsm8k", "data/g.jsonl"), ("mmlu", None)]


def test_an_unsupported_backend_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="native.*evalscope"):
        _eval(model="m", eval_backend="OpenCompass")


@pytest.mark.parametrize("flags, message", [
    ({}, "--eval_benchmarks run at each evaluation, beside the eval loss: pass --val_dataset"),
    ({"val_dataset": ["v.jsonl"], "eval_strategy": "no"}, "--eval_strategy no runs none"),
    ({"val_dataset": ["v.jsonl"], "eval_benchmarks": ["qa"]}, "--predict_with_generate"),
])
def test_training_benchmarks_need_evaluations(flags, message):
    base = {"model": "m", "dataset": ["d.jsonl"], "eval_benchmarks": ["gsm8k=g.jsonl"]}
    with pytest.raises(ConfigError, match=message):
        SftConfig.from_flat({**base, **flags})


def test_ms_swift_eval_dataset_is_the_training_benchmarks_alias():
    cfg = SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], "val_dataset": ["v.jsonl"],
                               "eval_dataset": ["general_mcq=q"], "eval_limit": 5})
    assert cfg.bench.eval_benchmarks == ["general_mcq=q"] and cfg.bench.eval_limit == 5


@pytest.mark.parametrize("method, message", [("ppo", "--rlhf_type ppo does not evaluate"),
                                             ("rm", "--rlhf_type rm trains a reward model")])
def test_rlhf_methods_without_a_generating_evaluation_refuse_benchmarks(method, message):
    flags = {"rlhf_type": method, "model": "m", "dataset": ["d.jsonl"], "val_dataset": ["v.jsonl"],
             "eval_benchmarks": ["gsm8k=g.jsonl"]}
    if method == "ppo":
        flags.update(reward_model="r", val_dataset=[])
    with pytest.raises(ConfigError, match=message):
        RlhfConfig.from_flat(flags)
