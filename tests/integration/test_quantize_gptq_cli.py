"""`swiftkit quantize --quant_method gptq|awq` end to end: calibration from the built-in sample through the chat
template, GPTQModel on this CPU, the parity check, and `swiftkit infer --model` on the result.

GPTQModel cannot share the dev environment (it needs protobuf >= 7.34, the swanlab tracker < 7), so `make test`
runs this file, with tests/unit/exporters/test_quant_gptq.py, in a venv of its own (.venv-gptq)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from test_quantize_cli import _infer, _weights_bytes

from swiftkit.cli.main import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gptqmodel") is None or importlib.util.find_spec("optimum") is None,
    reason="GPTQModel lives in .venv-gptq: `make test` runs this file there (pip install 'swiftkit[gptq]')")


def test_gptq_quantizes_a_trained_adapter_checks_parity_and_serves(trained, tmp_path):
    out = tmp_path / "gptq"
    assert main(["quantize", "--adapters", str(trained), "--quant_method", "gptq", "--quant_bits", "4",
                 "--group_size", "32", "--quant_n_samples", "16", "--output_dir", str(out)]) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["ok"] is True and parity["template_ok"] is True and parity["stop_tokens_ok"] is True
    assert 0 < parity["max_logit_diff"] < 0.5 and parity["top1_agreement"] >= 0.6, parity["logits"]
    info = json.loads((out / "export_info.json").read_text())
    assert info["label"] == "gptq-int4" and info["quantization"]["calibration_rows"] == 16
    assert info["quantization"]["calibration_data"] == ["calibration-mix"]
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "gptq" and config["quantization_config"]["bits"] == 4
    assert not (tmp_path / "logs").exists()  # GPTQModel's per-layer logs stay out of the working directory
    merged = tmp_path / "merged"
    assert main(["export", "--adapters", str(trained), "--output_dir", str(merged), "--check_parity", "false"]) == 0
    assert _weights_bytes(out) < _weights_bytes(merged)
    _infer(out, tmp_path, "gptq")
