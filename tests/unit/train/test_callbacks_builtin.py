"""Built-in callbacks: early_stop's count on known metric sequences, the flag checks every builder makes
before any weights load, save_best's training arguments, and graceful_exit's signal handlers."""

from __future__ import annotations

import signal

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from swiftkit.config import SftConfig
from swiftkit.core.errors import ConfigError
from swiftkit.recipes.parts import callback_names, training_arguments
from swiftkit.train.builtin_callbacks import BUILTIN_CALLBACKS
from swiftkit.train.callback_setup import training_overrides
from swiftkit.train.early_stop import EarlyStop, evaluations_since_best
from swiftkit.train.errors import TrainError
from swiftkit.train.graceful_exit import GracefulExit


def config(**flags) -> SftConfig:
    return SftConfig.from_flat({"model": "tiny", "dataset": ["rows.jsonl"], "val_dataset": ["val.jsonl"], **flags})


def test_registry_names():
    assert {"early_stop", "neftune", "graceful_exit", "perf_log", "save_best"} <= set(BUILTIN_CALLBACKS)


# -- early_stop ----------------------------------------------------------------------------------------


def test_evaluations_since_best():
    assert evaluations_since_best([3.0], False) == 0
    assert evaluations_since_best([3.0, 2.0, 2.5, 2.4], False) == 2
    assert evaluations_since_best([3.0, 2.0, 2.0], False) == 1  # equal is not better
    assert evaluations_since_best([0.1, 0.3, 0.2], True) == 1
    assert evaluations_since_best([1.0, float("nan"), 0.5], False) == 0


class Saving:
    def __init__(self, save_strategy="steps"):
        self.save_strategy = save_strategy


def run_evaluations(callback, values, key="eval_loss", save_strategy="steps") -> int | None:
    """Feed evaluations with ``values`` (one per step) to ``callback`` as the trainer would; the step at
    which it stops training, or None."""
    state, control = TrainerState(), TrainerControl()
    for step, value in enumerate(values, start=1):
        state.global_step = step
        metrics = {key: value, "eval_runtime": 0.1}
        state.log_history.append({**metrics, "step": step})  # the trainer logs before on_evaluate
        callback.on_evaluate(Saving(save_strategy), state, control, metrics=metrics)
        if control.should_training_stop:
            assert control.should_save == (save_strategy != "best")  # the stopped run ends with a checkpoint
            return step
        assert not control.should_save
    return None


def test_early_stop_stops_after_patience_evaluations_without_improvement():
    losses = [3.0, 2.0, 2.5, 1.9, 2.2, 2.1, 2.3, 1.0]
    assert run_evaluations(EarlyStop(2), losses) == 6  # best 1.9 at eval 4; evals 5 and 6 do not beat it
    assert run_evaluations(EarlyStop(3), losses) == 7
    assert run_evaluations(EarlyStop(9), losses) is None
    assert run_evaluations(EarlyStop(2), losses, save_strategy="best") == 6
    assert run_evaluations(EarlyStop(2), losses, save_strategy="no") == 6
    scores = [0.1, 0.2, 0.2, 0.15]
    assert run_evaluations(EarlyStop(2, "eval_acc", True), scores, key="eval_acc") == 4


def test_early_stop_names_a_metric_the_evaluation_did_not_log():
    with pytest.raises(TrainError, match="early_stop compares eval_acc, which the evaluation at step 1 did not log "
                                         r"\(it logged eval_loss, eval_runtime\)"):
        run_evaluations(EarlyStop(2, "eval_acc", True), [1.0])


def test_early_stop_is_built_from_the_flags():
    assert "early_stop" in callback_names(config(early_stop_interval=4))
    cb = BUILTIN_CALLBACKS["early_stop"](config(early_stop_interval=4))
    assert (cb.patience, cb.key, cb.greater_is_better) == (4, "eval_loss", False)
    cb = BUILTIN_CALLBACKS["early_stop"](config(callbacks=["early_stop"], metric="acc", metric_for_best_model="acc"))
    assert (cb.patience, cb.key, cb.greater_is_better) == (3, "eval_acc", True)
    cb = BUILTIN_CALLBACKS["early_stop"](config(early_stop_interval=1, metric="acc", metric_for_best_model="eval_acc",
                                                greater_is_better=False))
    assert (cb.key, cb.greater_is_better) == ("eval_acc", False)


@pytest.mark.parametrize(("flags", "message"), [
    ({"val_dataset": []}, "--early_stop_interval works on evaluations: pass --val_dataset FILE or --split_dataset_ratio"),
    ({"eval_strategy": "no"}, "--early_stop_interval works on evaluations: drop --eval_strategy no"),
    ({"metric_for_best_model": "acc"}, "--metric_for_best_model acc is not computed at evaluations .only loss is.: "
                                       "add --metric acc"),
    ({"metric_for_best_model": "bleu", "metric": "acc"}, "--metric_for_best_model bleu is not one of the values "
                                                         "--metric acc logs .loss, acc."),
])
def test_early_stop_flag_errors(flags, message):
    with pytest.raises(ConfigError, match=message):
        BUILTIN_CALLBACKS["early_stop"](config(early_stop_interval=2, **flags))


# -- save_best -----------------------------------------------------------------------------------------


def test_save_best_saves_when_the_metric_improves_and_loads_the_best(tmp_path):
    cfg = config(load_best_model_at_end=True)
    assert "save_best" in callback_names(cfg)
    BUILTIN_CALLBACKS["save_best"](cfg)
    args = training_arguments(cfg, tmp_path, has_val=True)
    assert args["load_best_model_at_end"] and args["save_strategy"] == "best"
    assert (args["metric_for_best_model"], args["greater_is_better"]) == ("loss", False)
    TrainingArguments(**args)  # transformers accepts the combination
    same = training_arguments(config(callbacks=["save_best"]), tmp_path, has_val=True)
    assert same["load_best_model_at_end"] and same["save_strategy"] == "best"
    acc = training_overrides(config(callbacks=["save_best"], metric="acc", metric_for_best_model="acc"))
    assert (acc["metric_for_best_model"], acc["greater_is_better"]) == ("acc", True)


def test_save_best_with_explicit_step_saves_follows_the_evaluations(tmp_path):
    cfg = config(load_best_model_at_end=True, save_strategy="steps", eval_steps=5)
    BUILTIN_CALLBACKS["save_best"](cfg)
    args = training_arguments(cfg, tmp_path, has_val=True)
    assert (args["save_strategy"], args["save_steps"], args["eval_steps"]) == ("steps", 5, 5)
    TrainingArguments(**args)
    kept = training_arguments(config(load_best_model_at_end=True, save_strategy="steps", save_steps=10, eval_steps=5),
                              tmp_path, has_val=True)
    assert (kept["save_steps"], kept["eval_steps"]) == (10, 5)
    TrainingArguments(**kept)


@pytest.mark.parametrize(("flags", "message"), [
    ({"val_dataset": []}, "--load_best_model_at_end works on evaluations: pass --val_dataset"),
    ({"save_strategy": "no"}, "--load_best_model_at_end keeps the best checkpoint, so it saves at evaluations: drop "
                              "--save_strategy no"),
    ({"save_strategy": "epoch"}, "make --save_strategy and --eval_strategy the same"),
    ({"save_strategy": "steps", "save_steps": 7, "eval_steps": 5}, "make --save_steps a multiple of --eval_steps"),
    ({"metric_for_best_model": "rouge-l"}, "add --metric rouge-l"),
])
def test_save_best_flag_errors(flags, message):
    with pytest.raises(ConfigError, match=message):
        BUILTIN_CALLBACKS["save_best"](config(load_best_model_at_end=True, **flags))


def test_without_save_best_the_strategies_stay_as_given(tmp_path):
    args = training_arguments(config(save_steps=7), tmp_path, has_val=True)
    assert (args["save_strategy"], args["save_steps"], args["load_best_model_at_end"]) == ("steps", 7, False)


# -- graceful_exit ---------------------------------------------------------------------------------------


class Args:
    output_dir = "unused"


def test_graceful_exit_restores_the_previous_handlers():
    received = []
    before = {sig: signal.signal(sig, lambda s, f: received.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        mine = {sig: signal.getsignal(sig) for sig in before}
        callback = BUILTIN_CALLBACKS["graceful_exit"](config())
        callback.on_train_begin(Args(), TrainerState(), TrainerControl())
        assert signal.getsignal(signal.SIGTERM) == callback._handle
        # Outside a training loop (here: no trainer on the stack) a signal goes to the previous handler.
        signal.raise_signal(signal.SIGTERM)
        assert received == [signal.SIGTERM] and callback.received is None
        callback.on_train_begin(Args(), TrainerState(), TrainerControl())
        callback.on_train_end(Args(), TrainerState(), TrainerControl())
        assert {sig: signal.getsignal(sig) for sig in before} == mine
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_graceful_exit_asks_for_a_save_and_a_stop_at_the_next_optimizer_step():
    callback, state, control = GracefulExit("sft"), TrainerState(), TrainerControl()
    state.global_step = 6
    callback.on_optimizer_step(Args(), state, control)
    assert not (control.should_save or control.should_training_stop)
    callback.received = signal.SIGTERM
    callback.on_optimizer_step(Args(), state, control)
    assert control.should_save and control.should_training_stop and callback.stop_step == 7
    state.global_step, control.should_evaluate = 7, True  # an evaluation step (set by DefaultFlowCallback)
    callback.on_step_end(Args(), state, control)
    assert not control.should_evaluate and control.should_save
