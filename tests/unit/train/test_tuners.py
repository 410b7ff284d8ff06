"""Built-in tuners on a tiny model: which parameters train (full/freeze selection, refusals, registry)."""

import pytest

from swiftkit.config import SftConfig
from swiftkit.train.errors import TrainError
from swiftkit.train.tuners import BUILTIN_TUNERS, apply_freeze, apply_full, apply_lora


def config(**flags):
    return SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], **flags})


@pytest.fixture
def model():
    from tiny import make_tiny_model

    return make_tiny_model("llama")


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_lora_targets_every_linear_layer_but_the_head(model):
    names = trainable(apply_lora(model, config()))
    assert names and all("lora_" in n for n in names)
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"{proj}.lora_A" in n for n in names), proj
    assert not any("lm_head" in n for n in names)


def test_lora_bad_target_is_a_clear_error(model):
    with pytest.raises(TrainError, match="--target_modules no_such_module"):
        apply_lora(model, config(target_modules=["no_such_module"]))


def test_full_trains_everything(model):
    for p in model.parameters():
        p.requires_grad_(False)
    assert trainable(apply_full(model, config(train_type="full"))) == {n for n, _ in model.named_parameters()}


def test_full_freezes_prefixes_and_regex_and_trainable_wins(model):
    tuned = apply_full(model, config(train_type="full", freeze_parameters=["model.embed_tokens"],
                                     freeze_parameters_regex=r"layers\.0\.", trainable_parameters=["model.layers.0.mlp"]))
    names = trainable(tuned)
    assert not any(n.startswith("model.embed_tokens") for n in names)
    assert not any(n.startswith("model.layers.0.self_attn") for n in names)
    assert {n for n in names if n.startswith("model.layers.0.")} == {
        "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight"}
    assert "lm_head.weight" in names and "model.layers.1.self_attn.q_proj.weight" in names


def test_full_freeze_ratio_counts_from_the_embeddings(model):
    params = list(model.named_parameters())
    total = sum(p.numel() for _, p in params)
    frozen = {n for n, _ in params} - trainable(apply_full(model, config(train_type="full",
                                                                           freeze_parameters_ratio=0.4)))
    order = [n for n, _ in params]
    # a prefix of the parameter order, holding at least 40% of the weights, without the last parameter that crossed
    assert frozen == set(order[:len(frozen)]) and order[0] == "model.embed_tokens.weight"
    held = sum(p.numel() for n, p in params if n in frozen)
    last = dict(params)[order[len(frozen) - 1]].numel()
    assert held >= 0.4 * total > held - last


def test_full_selection_errors(model):
    with pytest.raises(TrainError, match="--freeze_parameters/--freeze_parameters_regex model.nope matches no"):
        apply_full(model, config(train_type="full", freeze_parameters=["model.nope"]))
    with pytest.raises(TrainError, match="froze every parameter"):
        apply_full(model, config(train_type="full", freeze_parameters_ratio=1.0))


def test_freeze_trains_only_last_layers(model):
    names = trainable(apply_freeze(model, config(train_type="freeze", freeze_trainable_layers=1)))
    assert names and all(n.startswith(("model.layers.1.", "model.norm")) for n in names)
    with pytest.raises(TrainError, match="exceeds"):
        apply_freeze(model, config(train_type="freeze", freeze_trainable_layers=3))


@pytest.mark.parametrize("flag", ["freeze_llm", "freeze_vit", "freeze_aligner"])
@pytest.mark.parametrize("train_type", ["lora", "full", "ia3"])
def test_multimodal_flags_on_a_text_model_are_refused(model, flag, train_type):
    with pytest.raises(TrainError, match=f"--{flag}: the model has no vision tower"):
        BUILTIN_TUNERS[train_type](model, config(train_type=train_type, **{flag: False}))


@pytest.mark.parametrize("freeze_vit", [True, False])
def test_a_target_named_by_hand_adapts_a_frozen_vision_tower_nowhere(freeze_vit):
    # LLaVA's CLIP tower has q_proj layers and its patch convolution; the language model has q_proj too
    from tiny_vlm import make_tiny_vlm

    from swiftkit.train.tuner_params import multimodal_part

    model, _ = make_tiny_vlm("llava")
    tuned = apply_lora(model, config(target_modules=["q_proj", "patch_embedding"], freeze_vit=freeze_vit))
    adapted = {n.split(".lora_")[0].replace("base_model.model.", "") for n in trainable(tuned)}
    parts = {multimodal_part(n) for n in adapted}
    assert parts == ({"llm"} if freeze_vit else {"llm", "vision"})
    assert any(n.endswith("patch_embedding") for n in adapted) is not freeze_vit


def test_multimodal_defaults_are_fine_on_a_text_model(model):
    assert trainable(apply_full(model, config(train_type="full")))


@pytest.mark.parametrize("train_type,message", [
    ("reft", "pyreft, whose every release pins transformers 4.x"),
    ("longlora", "shifted sparse attention"),
])
def test_unsupported_tuners_are_one_line_with_the_reason(model, train_type, message):
    with pytest.raises(TrainError, match=message) as info:
        BUILTIN_TUNERS[train_type](model, config(train_type=train_type))
    assert "\n" not in str(info.value) and "--train_type lora" in str(info.value)


def test_every_builtin_tuner_is_a_choice():
    from hosts import HOST

    from swiftkit.core.choices import choice_names

    names = set(choice_names(HOST, "tuner"))
    assert {"lora", "qlora", "full", "freeze", "adalora", "vera", "boft", "ia3", "loha", "lokr", "llamapro",
            "reft", "longlora"} <= names


@pytest.mark.parametrize("command,flags,message", [
    ("sft", {"train_type": "reft"}, "pyreft"),
    ("sft", {"train_type": "longlora"}, "shifted sparse attention"),
    ("sft", {"init_weights": "loftq"}, "add --quant_method bnb --quant_bits 4"),
    ("sft", {"train_type": "qlora", "init_weights": "olora"}, "cannot start from a 4/8-bit base"),
    ("rlhf", {"init_weights": "eva", "rlhf_type": "dpo"}, "`swiftkit rlhf` has none to give it"),
    ("rlhf", {"init_weights": "pissa", "rlhf_type": "dpo"}, "the dpo reference.* pass --ref_model"),
    ("rlhf", {"init_weights": "olora", "rlhf_type": "grpo", "reward_funcs": ["format"],
              "per_device_train_batch_size": 4}, "the grpo reference"),
])
def test_refusals_come_before_any_weights_load(command, flags, message):
    from swiftkit.config import RlhfConfig
    from swiftkit.train.tuners import check_before_loading

    cls = RlhfConfig if command == "rlhf" else SftConfig
    with pytest.raises(TrainError, match=message):
        check_before_loading(cls.from_flat({"model": "m", "dataset": ["d.jsonl"], **flags}))
    check_before_loading(cls.from_flat({"model": "m", "dataset": ["d.jsonl"]}))  # the defaults pass


def test_base_moving_inits_are_fine_where_no_adapters_off_reference_is_used():
    from swiftkit.config import RlhfConfig
    from swiftkit.train.tuners import check_before_loading

    base = {"model": "m", "dataset": ["d.jsonl"], "init_weights": "pissa"}
    check_before_loading(RlhfConfig.from_flat({**base, "rlhf_type": "orpo"}))
    check_before_loading(RlhfConfig.from_flat({**base, "rlhf_type": "dpo", "ref_model": "m"}))
    check_before_loading(SftConfig.from_flat(base))


def test_adapter_conversion_named_by_hand_for_adapters_that_need_none_is_refused():
    from swiftkit.train.tuners import TUNER_CALLBACKS

    def cfg(init):
        return SftConfig.from_flat({"model": "m", "dataset": ["d.jsonl"], "init_weights": init})

    with pytest.raises(TrainError, match="need no conversion: drop it from --callbacks"):
        TUNER_CALLBACKS["adapter_conversion"](cfg("true"))
    assert TUNER_CALLBACKS["adapter_conversion"](cfg("pissa")) is not None
