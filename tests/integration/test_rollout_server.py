"""GRPO rollouts on a separate server: a real `swiftkit rollout --infer_backend transformers` process on a free port,
spoken to by the real trainer (`swiftkit rlhf --rlhf_type grpo --use_vllm true --vllm_mode server`) and by hand.

What the server generates is checked against plain transformers + peft generating locally with the same weights:
after a push (adapter or full weights) and after a GRPO run (the adapter of its last rollout step).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from test_rlhf_cli import REWARD_PLUGIN, read_jsonl, write_jsonl

from swiftkit.cli.main import main
from swiftkit.train.rollout_client import trainable_weights

EXE = Path(sys.executable).parent / "swiftkit"
MAX_TOKENS = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    port: int
    model: Path
    log: Path

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as reply:
            return json.loads(reply.read())

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
        request = urllib.request.Request(f"{self.url}{path}", data=body, headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=120) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def generate(self, prompts, n: int = 1) -> list[list[int]]:
        status, body = self.post("/generate", json.dumps({
            "prompts": prompts, "n": n, "max_tokens": MAX_TOKENS, "temperature": 0,
            "stop_token_ids": [self.stop]}).encode())
        assert status == 200, body
        return body["completion_ids"]

    @property
    def stop(self) -> int:
        """The end-of-turn token id (ChatML's <|im_end|>)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.model).convert_tokens_to_ids("<|im_end|>")


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal delivers it, also when pytest runs as a background job


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    model = tiny_model_dir("llama", "chatml")
    port = _free_port()
    log = tmp_path_factory.mktemp("rollout") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "swiftkit.cli.main", "rollout", "--model", str(model),
                                 "--infer_backend", "transformers", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=_interruptible)
    found = Server(f"http://127.0.0.1:{port}", port, model, log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                assert found.get("/health")["status"] == "ok"
                break
            except OSError:
                time.sleep(0.3)
        assert proc.poll() is None, log.read_text()
        yield found
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 130 and "rollout: stopped" in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def base(server):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(server.model).eval(), AutoTokenizer.from_pretrained(server.model)


def prompt_ids(tok, questions) -> list[list[int]]:
    ids = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)["input_ids"]
           for q in questions]
    assert len({len(p) for p in ids}) == 1  # one length: the server's batch needs no padding
    return ids


def local_greedy(model, prompts, n: int, stop: int) -> list[list[int]]:
    """What plain transformers generates for the rows the server generates (each prompt n times, one batch)."""
    rows = torch.tensor([p for p in prompts for _ in range(n)])
    with torch.no_grad():
        out = model.generate(input_ids=rows, attention_mask=torch.ones_like(rows), max_new_tokens=MAX_TOKENS,
                             do_sample=False, eos_token_id=[stop], pad_token_id=stop)
    replies = []
    for ids in out[:, rows.shape[1]:].tolist():
        replies.append(ids[:ids.index(stop) + 1] if stop in ids else ids)
    return replies


def test_pushed_weights_generate_what_the_same_weights_generate_locally(server, base):
    from peft import LoraConfig, get_peft_model

    model, tok = base
    prompts = prompt_ids(tok, ["Count to 3.", "Count to 7."])
    start = server.get("/health")
    assert start["backend"] == "transformers" and start["model"] == server.model.name
    assert start["identity"]["architecture"] == "LlamaForCausalLM"

    torch.manual_seed(1)
    adapted = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                                              init_lora_weights=False)).eval()
    status, body = server.post("/update_weights", trainable_weights(adapted, 0), "application/octet-stream")
    assert status == 200 and body["version"] == start["version"] + 1
    expected = local_greedy(adapted, prompts, 2, server.stop)
    assert expected != local_greedy(model, prompts, 2, server.stop)  # the adapter changes the replies
    assert server.generate(prompts, n=2) == expected
    status, body = server.post("/generate", json.dumps({"prompts": prompts[:1], "max_tokens": MAX_TOKENS,
                                                        "temperature": 0, "logprobs": True}).encode())
    assert status == 200 and body["completion_ids"][0] == expected[0] and body["finish_reasons"][0] in ("stop", "length")
    with torch.no_grad():
        logits = adapted(torch.tensor([prompts[0] + expected[0]])).logits[0, len(prompts[0]) - 1:-1]
    local = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(expected[0])[:, None])[:, 0]
    assert body["logprobs"][0] == pytest.approx(local.tolist(), abs=1e-4)

    full = copy.deepcopy(model)
    with torch.no_grad():
        for param in full.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    status, body = server.post("/update_weights", trainable_weights(full, 1), "application/octet-stream")
    assert status == 200 and body["version"] == start["version"] + 2
    assert server.generate(prompts, n=2) == local_greedy(full, prompts, 2, server.stop)

    status, body = server.post("/update_weights", trainable_weights(model, 2), "application/octet-stream")
    assert status == 200  # the loaded weights again, for the tests after this one
    assert server.generate(prompts) == local_greedy(model, prompts, 1, server.stop)

    from swiftkit.inference.rollout_protocol import encode_weights

    status, body = server.post("/update_weights", encode_weights({"lm_head.nope": torch.zeros(2)}, kind="weights"),
                               "application/octet-stream")
    assert status == 400 and "do not fit the served model (unknown ['lm_head.nope'])" in body["error"]["message"]
    status, body = server.post("/generate", b'{"prompts": [[1]], "max_token": 3}')
    assert status == 400 and body["error"]["param"] == "max_token"
    assert server.get("/health")["version"] == start["version"] + 3  # refused pushes change nothing


def test_grpo_generates_on_the_server_and_pushes_its_weights_each_step(server, base, tmp_path):
    """Two ranks (DDP): rank 0 pushes the adapter before each rollout step and asks for both ranks' completions in
    one request; the server then holds the adapter of the last rollout step (checkpoint-1)."""
    from peft import PeftModel

    (tmp_path / "rewards.py").write_text(REWARD_PLUGIN)
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"query": f"Question number {i}: what next?"} for i in range(8)])
    before = server.get("/health")["version"]
    log_start = len(server.log.read_text())
    argv = [str(EXE), "rlhf", "--rlhf_type", "grpo", "--model", str(server.model), "--dataset", str(data),
            "--output_dir", str(tmp_path / "out"), "--plugins", str(tmp_path / "rewards.py"), "--reward_funcs",
            "low_ids", "--max_steps", "2", "--save_steps", "1", "--per_device_train_batch_size", "4",
            "--num_generations", "2", "--max_completion_length", "8", "--learning_rate", "0.1", "--lora_dropout",
            "0", "--logging_steps", "1", "--report_to", "none", "--use_vllm", "true", "--vllm_mode", "server",
            "--vllm_server_port", str(server.port), "--vllm_server_timeout", "30"]
    env = {**os.environ, "SWIFTKIT_ALLOCATOR": "system", "NPROC_PER_NODE": "2"}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = list((tmp_path / "out").iterdir())
    logs = [r for r in read_jsonl(run / "logging.jsonl") if "reward" in r]
    assert [r["step"] for r in logs] == [1, 2]
    assert server.get("/health")["version"] == before + 2

    served = server.log.read_text()[log_start:].splitlines()
    pushes = [line for line in served if "/update_weights adapter" in line]
    rollouts = [line for line in served if "/generate" in line]
    assert [p.split(" of step ")[1].split(":")[0] for p in pushes] == ["0", "1"]
    assert len(rollouts) == 2 and all("/generate 4 prompts x 2:" in line for line in rollouts)  # both ranks' rows

    model, tok = base
    trained = PeftModel.from_pretrained(copy.deepcopy(model), str(run / "checkpoint-1")).eval()
    prompts = prompt_ids(tok, ["Question number 1: what next?", "Question number 2: what next?"])
    expected = local_greedy(trained, prompts, 1, server.stop)
    assert expected != local_greedy(model, prompts, 1, server.stop)  # step 1 changed the adapter's replies
    assert server.generate(prompts) == expected


def test_ppo_samples_its_rollouts_on_the_server(server, tmp_path):
    """PPO pushes its adapter before each rollout and scores the server's replies like its own."""
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"query": f"Question number {i}: what next?"} for i in range(8)])
    before = server.get("/health")["version"]
    log_start = len(server.log.read_text())
    argv = [str(EXE), "rlhf", "--rlhf_type", "ppo", "--model", str(server.model), "--reward_model",
            str(server.model), "--dataset", str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "2",
            "--num_ppo_epochs", "1", "--per_device_train_batch_size", "4", "--max_completion_length", "6",
            "--learning_rate", "1e-3", "--lora_dropout", "0", "--logging_steps", "1", "--report_to", "none",
            "--use_vllm", "true", "--vllm_mode", "server", "--vllm_server_port", str(server.port),
            "--vllm_server_timeout", "30"]
    proc = subprocess.run(argv, env={**os.environ, "SWIFTKIT_ALLOCATOR": "system"}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = list((tmp_path / "out").iterdir())
    logs = [r for r in read_jsonl(run / "logging.jsonl") if "objective/kl" in r]
    assert [r["step"] for r in logs] == [1, 2]
    assert abs(logs[0]["objective/kl"]) < 1e-4  # the first rollout's policy is its reference: the same weights
    assert 0 < logs[0]["completions/mean_length"] <= 6
    assert server.get("/health")["version"] == before + 2
    served = server.log.read_text()[log_start:].splitlines()
    pushes = [line for line in served if "/update_weights adapter" in line]
    assert [p.split(" of step ")[1].split(":")[0] for p in pushes] == ["0", "1"]
    assert sum("/generate 4 prompts x 1:" in line for line in served) == 2


GRPO = ["rlhf", "--rlhf_type", "grpo", "--reward_funcs", "length", "--per_device_train_batch_size", "4",
        "--num_generations", "4", "--max_completion_length", "8", "--max_steps", "1", "--report_to", "none",
        "--use_vllm", "true"]


@pytest.fixture
def grpo_data(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [{"query": f"Question {i}?"} for i in range(4)])


def test_an_unreachable_server_is_one_line_within_the_timeout_and_no_run(tiny_model_dir, grpo_data, tmp_path, capsys):
    port = _free_port()
    start = time.monotonic()
    rc = main([*GRPO, "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(grpo_data), "--output_dir",
               str(tmp_path / "out"), "--vllm_mode", "server", "--vllm_server_port", str(port),
               "--vllm_server_timeout", "2"])
    took = time.monotonic() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and took < 30, took
    assert err[-1].startswith(f"swiftkit rlhf: error: the rollout server at http://127.0.0.1:{port} did not answer "
                              "within 2 s (--vllm_server_timeout; last: ")
    assert "Loading weights" not in "\n".join(err) and not (tmp_path / "out").exists()


def test_a_server_of_another_model_is_refused_before_training(server, tiny_model_dir, grpo_data, tmp_path, capsys):
    rc = main([*GRPO, "--model", str(tiny_model_dir("qwen2", "chatml")), "--dataset", str(grpo_data),
               "--output_dir", str(tmp_path / "out"), "--vllm_mode", "server", "--vllm_server_base_url", server.url])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err == (
        f"swiftkit rlhf: error: the rollout server at {server.url} serves '{server.model.name}', another model than "
        "this run trains (architecture LlamaForCausalLM vs Qwen2ForCausalLM; model_type llama vs qwen2, served vs "
        "trained): start `swiftkit rollout --model` with the model of --model")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_colocate_without_a_gpu_is_one_line_and_no_run(tiny_model_dir, grpo_data, tmp_path, capsys):
    rc = main([*GRPO, "--model", str(tiny_model_dir("llama", "chatml")), "--dataset", str(grpo_data), "--output_dir",
               str(tmp_path / "out"), "--vllm_mode", "colocate"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.startswith(
        "swiftkit rlhf: error: --vllm_mode colocate runs vLLM inside the training process and needs a CUDA GPU and "
        "swiftkit[vllm]; on this machine use --vllm_mode server with `swiftkit rollout` (")
    assert not (tmp_path / "out").exists()


@pytest.mark.gpu
def test_vllm_rollout_server_takes_pushed_adapters(tiny_model_dir, tmp_path):
    """On a GPU with swiftkit[vllm]: the vLLM backend generates what transformers does for a pushed adapter."""
    pytest.importorskip("vllm")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tiny_model_dir("llama", "chatml")
    port = _free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "swiftkit.cli.main", "rollout", "--model", str(model_dir),
                                 "--infer_backend", "vllm", "--torch_dtype", "float32", "--port", str(port),
                                 "--vllm_gpu_memory_utilization", "0.3"], stdout=out, stderr=subprocess.STDOUT)
    served = Server(f"http://127.0.0.1:{port}", port, model_dir, log)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                served.get("/health")
                break
            except OSError:
                time.sleep(1)
        assert proc.poll() is None, log.read_text()
        model, tok = AutoModelForCausalLM.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)
        prompts = prompt_ids(tok, ["Count to 3.", "Count to 7."])
        torch.manual_seed(1)
        adapted = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        status, _ = served.post("/update_weights", trainable_weights(adapted, 0), "application/octet-stream")
        assert status == 200
        assert served.generate(prompts) == local_greedy(adapted.eval(), prompts, 1, served.stop)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
