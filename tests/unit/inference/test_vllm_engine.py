"""The vLLM engine: its flags and missing-package error here; replies and LoRA serving on a GPU (-m gpu)."""

import importlib.util

import pytest
from hosts import builtin_host

from swiftkit.cli.main import main
from swiftkit.config import ConfigError, DeployConfig, EvalConfig, InferConfig
from swiftkit.core.choices import choice_names, unknown_choice
from swiftkit.inference.protocol import SamplingParams
from swiftkit.inference.vllm_engine import sampling_kwargs

HAS_VLLM = importlib.util.find_spec("vllm") is not None
MISSING = "--infer_backend vllm needs the vllm package: pip install 'swiftkit[vllm]' (GPU machines only)"
QUESTIONS = ("What is the capital of France?", "Name three colours.", "Count from one to five.")


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
@pytest.mark.parametrize("command", ["infer", "eval", "deploy"])
def test_missing_vllm_is_one_clear_error_before_any_model_loads(command, capsys):
    # The model does not exist: had loading started first, the error would be about the model.
    argv = [command, "--model", "no/such-model-anywhere", "--infer_backend", "vllm"]
    if command == "eval":
        argv += ["--val_dataset", "rows.jsonl"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"swiftkit {command}: error: {MISSING}"


def test_vllm_is_a_valid_infer_backend_name():
    host = builtin_host()
    assert {"transformers", "vllm"} <= set(choice_names(host, "infer_engine"))
    message = str(unknown_choice(host, "infer_engine", "vlm"))
    assert "did you mean 'vllm'" in message and "transformers, vllm" in message


def test_vllm_flags_on_infer_eval_and_deploy():
    backend = {"infer_backend": "transformers"}  # the flags parse without vllm installed
    for cls, extra in ((InferConfig, {}), (EvalConfig, {"val_dataset": ["rows.jsonl"]}), (DeployConfig, {})):
        cfg = cls.from_flat({"model": "m", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5,
                             "vllm_max_model_len": 4096, "vllm_max_lora_rank": 16, **backend, **extra})
        assert (cfg.vllm.tensor_parallel_size, cfg.vllm.gpu_memory_utilization) == (2, 0.5)
        assert (cfg.vllm.vllm_max_model_len, cfg.vllm.vllm_max_lora_rank) == (4096, 16)
    with pytest.raises(ConfigError, match=r"--gpu_memory_utilization must be in \(0, 1\]"):
        InferConfig.from_flat({"model": "m", "gpu_memory_utilization": 1.5})
    with pytest.raises(ConfigError, match="--tensor_parallel_size must be >= 1"):
        DeployConfig.from_flat({"model": "m", "tensor_parallel_size": 0})


def test_sampling_kwargs_greedy_and_sampled():
    greedy = sampling_kwargs(SamplingParams(32, 0.0, 0.9, 50, 1.0, stop=("\n\n",)), [2, 7])
    assert greedy == {"n": 1, "max_tokens": 32, "temperature": 0.0, "top_p": 1.0, "top_k": -1,
                      "repetition_penalty": 1.0, "stop_token_ids": [2, 7], "stop": ["\n\n"], "seed": None}
    sampled = sampling_kwargs(SamplingParams(8, 0.7, 0.9, 0, 1.1, seed=3), [2])
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.9, -1)
    assert (sampled["stop"], sampled["seed"], sampled["repetition_penalty"]) == (None, 3, 1.1)
    assert sampling_kwargs(SamplingParams(8, 0.7, 0.9, 40, 1.0), [])["top_k"] == 40


# -- on a GPU with vllm installed: pytest -m gpu tests/unit/infer/test_vllm_engine.py ------------

def _conversations():
    return [[{"role": "user", "content": q}] for q in QUESTIONS]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """The transformers replies (base and LoRA) on SmolLM2 in float32, then one vLLM engine serving
    the same base model and the same adapter (one vLLM engine per process)."""
    pytest.importorskip("vllm")
    import torch
    from peft import LoraConfig, get_peft_model

    from swiftkit.inference.engine import TransformersEngine
    from swiftkit.inference.loading import load_for_inference
    from swiftkit.inference.vllm_engine import VllmEngine

    cfg = InferConfig.from_flat({"model": "smollm2-135m-instruct", "torch_dtype": "float32"})
    model, template, info = load_for_inference(cfg, registries=builtin_host().registries)
    model = model.to("cuda")
    gen = {"max_new_tokens": 16}
    base_replies = TransformersEngine(model, template).generate(_conversations(), **gen)

    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)  # a real change to the replies
    adapter_dir = tmp_path_factory.mktemp("lora")
    peft_model.save_pretrained(adapter_dir)
    lora_replies = TransformersEngine(peft_model.eval(), template).generate(_conversations(), **gen)
    peft_model.to("cpu")
    del peft_model, model
    torch.cuda.empty_cache()

    engine = VllmEngine(info["model_path"], template, adapters={"tuned": str(adapter_dir)}, dtype="float32",
                        tokenizer_path=info["tokenizer_path"], gpu_memory_utilization=0.4, max_model_len=2048,
                        max_lora_rank=8)
    engine.add_model("base", None)
    engine.add_model("tuned", "tuned")
    return engine, template, base_replies, lora_replies


@pytest.mark.gpu
def test_vllm_greedy_replies_equal_the_transformers_engine(engines):
    engine, template, base_replies, lora_replies = engines
    assert base_replies != lora_replies
    params = SamplingParams(16, 0.0, 1.0, 50, 1.0)
    prompts = [template.encode_prompt(m) for m in _conversations()]
    assert [g.text for g in engine.generate_ids(prompts, params, model="base")] == base_replies


@pytest.mark.gpu
def test_vllm_serves_a_lora_adapter_by_name(engines):
    from swiftkit.inference.protocol import ProtocolError

    engine, template, base_replies, lora_replies = engines
    assert engine.model_names() == ["base", "tuned"]
    params = SamplingParams(16, 0.0, 1.0, 50, 1.0)
    prompts = [template.encode_prompt(m) for m in _conversations()]
    assert [g.text for g in engine.generate_ids(prompts, params, model="tuned")] == lora_replies
    streamed = list(engine.stream_ids(prompts[0], params, model="tuned"))
    assert "".join(p for p in streamed if isinstance(p, str)) == lora_replies[0] == streamed[-1].text
    with pytest.raises(ProtocolError, match="the model 'other' does not exist"):
        engine.generate_ids(prompts[:1], params, model="other")
