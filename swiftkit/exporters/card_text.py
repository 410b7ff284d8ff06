"""The model card's text pieces: usage snippets (transformers / peft, llama.cpp, Ollama), public names for hub ids
and local paths (a card may be published, local directories are left out), and table formatting."""

from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt", ".arrow")
NEEDS = {  # what plain transformers needs installed to load each method's weights
    "bnb": "bitsandbytes",
    "gptq": "gptqmodel and optimum (pip install 'swiftkit[gptq]')",
    "awq": "gptqmodel (pip install 'swiftkit[awq]')",
    "torchao": "torchao",
}


# -- usage snippets ----------------------------------------------------------------------------------


def transformers_usage(folder: Path, method: str, ref: str, *, ms: bool) -> str:
    needs = NEEDS.get(method)
    peft = (folder / "adapter_config.json").is_file()
    lines = ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer"]
    lines += ["from peft import AutoPeftModelForCausalLM"] if peft else []
    lines += ["from modelscope import snapshot_download", "", f'path = snapshot_download("{ref}")'] if ms else [
        "", f'path = "{ref}"']
    loader = "AutoPeftModelForCausalLM" if peft else "AutoModelForCausalLM"
    lines += [f"model = {loader}.from_pretrained(path)"]
    lines += ["tokenizer = AutoTokenizer.from_pretrained(path)",
              'messages = [{"role": "user", "content": "Hello!"}]',
              "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,",
              '                                       return_tensors="pt").to(model.device)',
              "reply = model.generate(**inputs, max_new_tokens=128)",
              'print(tokenizer.decode(reply[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
              "```"]
    loads = "Plain transformers and peft load it" if peft else "Plain transformers loads it"
    text = (f"{loads} (no swiftkit needed); the tokenizer carries the chat template used in training and "
            "`generation_config.json` its stop tokens.")
    if needs:
        text += f" Loading {method} weights needs {needs} installed."
    return text + "\n\n" + "\n".join(lines)


def gguf_usage(folder: Path, files: list[str], ref: str, hf_repo) -> str:
    name = files[0] if files else "model.gguf"
    parts = ["With llama.cpp:", "", "```bash", f"llama-cli -m {name} -cnv"]
    if hf_repo:
        parts.append(f"llama-cli -hf {hf_repo} -cnv   # straight from the hub")
    parts.append("```")
    if (folder / "Modelfile").is_file():
        tag = ref.split("/")[-1].lower()
        parts += ["", "With Ollama (the Modelfile carries the chat template and stop tokens):", "", "```bash",
                  f"ollama create {tag} -f Modelfile", f"ollama run {tag}", "```"]
    elif hf_repo:
        parts += ["", "With Ollama:", "", "```bash", f"ollama run hf.co/{hf_repo}", "```"]
    parts += ["", "With transformers (dequantizes to full precision; needs the gguf package):", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f'model = AutoModelForCausalLM.from_pretrained("{ref}", gguf_file="{name}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{ref}", gguf_file="{name}")', "```"]
    return "\n".join(parts)


# -- formatting --------------------------------------------------------------------------------------


def is_hub_id(value: str) -> bool:
    return bool(HUB_ID.match(value)) and not Path(value).expanduser().exists()


def public_name(value: str) -> str:
    """A hub id as it is; a local path as its last component (the card may be published)."""
    if is_hub_id(value):
        return value
    return Path(value.rstrip("/")).name or value


def public_run_path(path: Path) -> str:
    """An adapter folder without the user's directories: ``run/checkpoint-N`` or the folder's name."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.name.startswith("checkpoint-") else path.name


def dataset_hub_id(spec: str) -> str | None:
    """The hub id of a ``--dataset`` value (``[hf::|ms::]owner/name[:subset][#N]``), None for files and names."""
    text = spec.strip()
    if Path(text).expanduser().exists():
        return None
    for prefix in ("hf::", "ms::"):
        text = text.removeprefix(prefix)
    text = text.split("#")[0].split(":")[0]
    if text.lower().endswith(DATA_SUFFIXES) or not is_hub_id(text):
        return None
    return text


def listed_files(folder: Path) -> list[tuple[str, str]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "README.md")
    return [(p.name, size(p.stat().st_size)) for p in files]


def size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def code(value) -> str | None:
    return f"`{value}`" if value else None


def is_scalar(value) -> bool:
    return isinstance(value, (bool, int, float, str)) and value != ""


def number(value, *, percent: bool = False) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2%}" if percent and 0 <= value <= 1 else f"{value:.4g}"
    return str(value)


def cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(number(v) if not isinstance(v, str) else v) for v in row) + " |"
              for row in rows]
    return "\n".join(lines)
