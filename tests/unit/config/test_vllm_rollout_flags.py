"""GRPO's rollout flags (--use_vllm, --vllm_mode, the server and colocate settings) and `swiftkit rollout`'s config:
defaults as ms-swift's, each rule one line naming the flag."""

from __future__ import annotations

import pytest

from swiftkit.cli.main import main
from swiftkit.config import ConfigError, RlhfConfig, RolloutConfig
from swiftkit.config.flagnames import REFUSED, flag_status

GRPO = {"model": "m", "dataset": ["d"], "rlhf_type": "grpo", "reward_funcs": ["length"],
        "per_device_train_batch_size": 4}


def grpo(**values) -> RlhfConfig:
    return RlhfConfig.from_flat({**GRPO, **values}, source="flag")


def test_defaults_are_ms_swifts_and_the_server_url_is_composed():
    v = grpo().vllm_rollout
    assert (v.use_vllm, v.vllm_mode, v.vllm_server_port, v.vllm_server_timeout) == (False, "colocate", 8000, 240.0)
    assert (v.vllm_gpu_memory_utilization, v.vllm_tensor_parallel_size, v.sleep_level) == (0.9, 1, 0)
    assert grpo(use_vllm=True, vllm_mode="server", vllm_server_host="10.0.0.2",
                vllm_server_port=8001).vllm_rollout.server_url == "http://10.0.0.2:8001"
    assert grpo(use_vllm=True, vllm_mode="server", vllm_server_host="::1").vllm_rollout.server_url == "http://[::1]:8000"
    url = grpo(use_vllm=True, vllm_mode="server", vllm_server_base_url="http://rollouts:9000/").vllm_rollout.server_url
    assert url == "http://rollouts:9000"


@pytest.mark.parametrize("values,message", [
    ({"use_vllm": True, "vllm_mode": "sever"}, r"unknown --vllm_mode 'sever' \(did you mean 'server'\?\); valid: server, colocate"),
    ({"use_vllm": True, "sleep_level": 3}, "--sleep_level must be 0, 1 or 2, got 3"),
    ({"use_vllm": True, "vllm_gpu_memory_utilization": 1.5}, r"--vllm_gpu_memory_utilization must be in \(0, 1\]"),
    ({"use_vllm": True, "vllm_mode": "server", "vllm_server_port": 0}, "--vllm_server_port must be between 1 and 65535"),
    ({"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": "rollouts:9000"},
     "--vllm_server_base_url must be http://HOST:PORT"),
    ({"use_vllm": True, "vllm_mode": "server", "vllm_server_timeout": 0}, "--vllm_server_timeout must be > 0"),
    ({"vllm_mode": "server"}, r"^--vllm_mode applies to vLLM rollouts: add --use_vllm true"),
    ({"use_vllm": True, "vllm_mode": "server", "sleep_level": 1},
     r"^--sleep_level does not apply to --vllm_mode server \(the `swiftkit rollout` server takes its own"),
    ({"use_vllm": True, "vllm_server_port": 8001}, r"^--vllm_server_port does not apply to --vllm_mode colocate"),
    ({"use_vllm": True, "vllm_mode": "server", "train_type": "llamapro"}, "--use_vllm with --train_type llamapro"),
    ({"use_vllm": True, "vllm_mode": "server", "init_weights": "pissa"},
     "--init_weights pissa changes the base weights, which the rollout server does not have"),
])
def test_each_rule_is_one_line_naming_the_flag(values, message):
    with pytest.raises(ConfigError, match=message) as info:
        grpo(**values)
    assert "\n" not in str(info.value)


def test_ppo_takes_a_rollout_server_and_not_colocated_vllm():
    ppo = {"model": "m", "dataset": ["d"], "rlhf_type": "ppo", "reward_model": "rm", "use_vllm": True}
    with pytest.raises(ConfigError, match=r"^--vllm_mode colocate is TRL's colocated vLLM, which GRPO alone uses"):
        RlhfConfig.from_flat(ppo, source="flag")
    cfg = RlhfConfig.from_flat({**ppo, "vllm_mode": "server", "vllm_server_port": 8123}, source="flag")
    assert cfg.vllm_rollout.server_url == "http://127.0.0.1:8123"
    with pytest.raises(ConfigError, match=r"--vllm_gpu_memory_utilization does not apply to --vllm_mode server"):
        RlhfConfig.from_flat({**ppo, "vllm_mode": "server", "vllm_gpu_memory_utilization": 0.5}, source="flag")
    with pytest.raises(ConfigError, match=r"--vllm_mode applies to --rlhf_type grpo/ppo, not dpo"):
        RlhfConfig.from_flat({"model": "m", "dataset": ["d"], "vllm_mode": "server"}, source="flag")


def test_implemented_flags_are_taken_the_rest_still_refused_with_a_reason():
    for flag in ("use_vllm", "vllm_mode", "vllm_server_host", "vllm_server_port", "vllm_server_base_url",
                 "vllm_server_timeout", "vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "sleep_level"):
        assert flag_status(RlhfConfig, flag) == ("accepted", None), flag
        assert flag not in REFUSED or flag == "sleep_level", flag  # sleep_level: refused by `rollout`, with why
    for flag in ("vllm_tensor_parallel_size", "vllm_gpu_memory_utilization"):
        assert flag_status(RolloutConfig, flag)[0] == "renamed"
    assert flag_status(RolloutConfig, "sleep_level")[0] == "refused"
    for flag in ("vllm_server_group_port", "async_generate", "vllm_enable_lora", "move_model_batches"):
        status, reason = flag_status(RlhfConfig, flag)
        assert status == "refused" and "swiftkit rollout" in reason, flag


def test_rollout_config_defaults_and_rules():
    cfg = RolloutConfig.from_flat({"model": "m"}, source="flag")
    s = cfg.server
    assert (s.infer_backend, s.host, s.port, s.max_model_len) == ("vllm", "127.0.0.1", 8000, None)
    assert (cfg.vllm.gpu_memory_utilization, cfg.vllm.tensor_parallel_size) == (0.9, 1)
    with pytest.raises(ConfigError, match="`swiftkit rollout` needs --model or --adapters"):
        RolloutConfig.from_flat({}, source="flag")
    with pytest.raises(ConfigError, match="serves one model: pass one --adapters entry"):
        RolloutConfig.from_flat({"adapters": ["a", "b"]}, source="flag")
    with pytest.raises(ConfigError, match="--port must be between 1 and 65535"):
        RolloutConfig.from_flat({"model": "m", "port": 70000}, source="flag")


def test_rollout_with_vllm_missing_is_one_line_before_any_model_loads(capsys):
    pytest.importorskip("torch")
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    assert main(["rollout", "--model", "no/such-model-anywhere"]) == 2  # --infer_backend vllm is the default
    err = capsys.readouterr().err.strip()
    assert err == ("swiftkit rollout: error: --infer_backend vllm needs the vllm package: pip install "
                   "'swiftkit[vllm]' (GPU machines only)")
