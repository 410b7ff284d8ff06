"""What the torchao and bnb quantizer tests share: an ExportSource built from a saved tiny model, its
reference logits, and the byte counts of a written safetensors folder."""

from __future__ import annotations

from pathlib import Path

from hosts import templates

PROBE_LENGTH = 64


def probe_ids(vocab_size: int):
    """64 fixed token ids below ``vocab_size`` (more positions than tests/tiny.py's probe, for a steadier
    top-1 agreement)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randint(13, vocab_size, (1, PROBE_LENGTH), generator=generator)


def logits(model):
    import torch

    model.eval()
    with torch.no_grad():
        return model(input_ids=probe_ids(model.config.vocab_size)).logits.float()


def tiny_source(model_dir: Path, quantize, extra_eos: list[int] | None = None):
    """An ExportSource for the tiny model in ``model_dir`` with ``quantize`` (a QuantizeArgs), as the export
    recipe hands it over: the model in eval mode, its own chat template, the template's stop tokens (plus
    ``extra_eos``) as the generation config's eos."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swiftkit.config import ExportConfig, ModelArgs
    from swiftkit.exporters.base import ExportSource
    from swiftkit.templates import get_template

    config = ExportConfig(model=ModelArgs(model=str(model_dir)), quantize=quantize)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    template = get_template(tokenizer, registry=templates())
    if extra_eos:
        model.generation_config.eos_token_id = list(extra_eos)
    return ExportSource(model=model, tokenizer=tokenizer, template=template, config=config)


def write(method, source, folder: Path) -> Path:
    folder.mkdir()
    try:
        method.write(source, folder)
    finally:
        source.cleanup()
    return folder


def tensor_bytes(folder: Path) -> dict[str, int]:
    """Bytes of every tensor stored in the folder's safetensors files, by name."""
    from safetensors import safe_open

    sizes = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                sizes[key] = f.get_tensor(key).nbytes
    return sizes


def file_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def linear_bytes(folder: Path) -> int:
    """Bytes of the decoder layers' linear weights (quantized data, scales, zero points), norms excluded."""
    return sum(size for name, size in tensor_bytes(folder).items()
               if name.startswith("model.layers.") and "norm" not in name)
