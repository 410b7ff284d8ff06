"""Every architecture in the model registry trains one LoRA step and generates, on a tiny random model.

One case per distinct (config.json ``model_type``, architecture) of the registry, named like
``qwen2-Qwen2ForCausalLM``. A case builds a 2-layer, hidden-64 model from the family's own config class
(``tests/arch_configs.py``), saves it with a tiny tokenizer, and runs swiftkit's path on it: resolve
(``--model_type`` of one registered type of that architecture) -> tokenizer + template selection ->
load -> the ``lora`` tuner hook (the type's ``lora_target_modules`` when set) -> template encode and
collate -> one AdamW step -> one ``generate`` through the inference engine.

A case is skipped, with the reason in ``pytest -rs``, when the installed transformers lacks the
architecture or the family's config class, or when no registered type of it can run here (remote
code, a package that is not installed, a ``requires`` range that excludes the installed version).
A case that fails because of swiftkit is listed in ``KNOWN_GAPS`` (strict xfail, reasons in
``pytest -rx``) until swiftkit is fixed. Vision-language families that ``tests/tiny_vlm.py`` builds are swept with
images by ``test_vision_sweep.py`` instead. The cases of ``DEFAULT_SUBSET`` always run; the others are
marked ``slow`` (``make test`` runs them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import metadata

import pytest
from arch_configs import TinyConfigError, tiny_config
from hosts import HOST, registries
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version
from tiny_vlm import TORCHVISION_FAMILIES, VLM_FAMILIES

from swiftkit.models.registry import model_types

# Vision-language families that tests/tiny_vlm.py builds (here or in the environment with torchvision): swept with
# images by test_vision_sweep.py. The registry's other vision types train on text here.
VISION_SWEPT = set(VLM_FAMILIES) | set(TORCHVISION_FAMILIES)

# Common architectures plus one of each mechanism (MoE, latent attention, state space) run by default.
DEFAULT_SUBSET = {
    "llama", "qwen2", "qwen3", "mistral", "gemma2", "phi3", "qwen2_moe", "qwen3_moe", "deepseek_v3", "mamba",
}
CONVERSATION = [
    {"role": "user", "content": "Hello! How can I help you today?"},
    {"role": "assistant", "content": "The quick brown fox jumps over the lazy dog."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital of France."},
]


# Failures that are swiftkit's, not the family's: (model types, the error, why). Strict, so a fix
# turns the case into an XPASS failure and its entry must go.
KNOWN_GAPS: list = []


@dataclass
class Case:
    """One (model_type, architecture) and the registered types that declare it."""

    model_type: str
    architecture: str
    types: list = field(default_factory=list)  # ModelEntry, one per registry type

    @property
    def id(self) -> str:
        return f"{self.model_type}-{self.architecture}"


def collect_cases() -> list[Case]:
    cases: dict[tuple[str, str], Case] = {}
    for entry in model_types(registries().models).values():
        if entry.model_type in VISION_SWEPT:  # test_vision_sweep.py trains these with images
            continue
        for arch in entry.architectures:
            key = (entry.model_type, arch)
            cases.setdefault(key, Case(*key)).types.append(entry)
    return sorted(cases.values(), key=lambda c: c.id)


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def type_blockers(entry) -> list[str]:
    """Why this registered type cannot run here (empty when it can)."""
    reasons = []
    if "remote-code" in entry.tags:
        reasons.append("needs remote code (tag remote-code)")
    for spec in entry.requires:
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            reasons.append(f"unparsable requirement {spec!r}")
            continue
        version = _installed(req.name)
        if version is None:
            reasons.append(f"needs {req.name} (not installed)")
        elif req.specifier and not req.specifier.contains(Version(version), prereleases=True):
            reasons.append(f"requires {spec} (installed {req.name} {version})")
    return reasons


def runnable_type(case: Case):
    """The first registered type of ``case`` that can run here, or a skip naming every blocker."""
    import transformers
    from transformers import CONFIG_MAPPING

    version = transformers.__version__
    if not hasattr(transformers, case.architecture):
        pytest.skip(f"{case.id}: transformers {version} has no {case.architecture}")
    if case.model_type not in CONFIG_MAPPING:
        pytest.skip(f"{case.id}: transformers {version} has no config class for model_type {case.model_type!r}")
    blocked = {}
    for entry in case.types:
        reasons = type_blockers(entry)
        if not reasons:
            return entry
        blocked.setdefault("; ".join(reasons), []).append(entry.type)
    listed = " | ".join(f"{', '.join(types)}: {why}" for why, types in blocked.items())
    pytest.skip(f"{case.id}: no registered type can run here ({listed})")


CASES = collect_cases()


def _param(case: Case):
    marks = [] if case.model_type in DEFAULT_SUBSET else [pytest.mark.slow]
    for gap_types, error, reason in KNOWN_GAPS:
        if case.model_type in gap_types:
            marks.append(pytest.mark.xfail(strict=True, raises=error, reason=reason))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.fixture(scope="module")
def plugins():
    """The plugin manager and the registries it builds, as a command gets them."""
    return HOST, HOST.registries


@pytest.fixture(scope="module")
def tokenizers():
    """style -> tokenizer: chatml for types using the tokenizer's template, None (no template) else."""
    from tiny import make_tokenizer

    return {style: make_tokenizer(style) for style in ("chatml", None)}


def save_tiny(case: Case, tokenizer, path):
    """A random tiny model of ``case`` and ``tokenizer`` saved to ``path``."""
    import torch
    import transformers

    try:
        config = tiny_config(
            case.model_type, case.architecture, vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
    except TinyConfigError as exc:
        pytest.skip(f"{case.id}: {exc}")
    torch.manual_seed(0)
    model = getattr(transformers, case.architecture)(config)
    size = sum(p.numel() for p in model.parameters())
    assert size < 1_000_000, f"{case.id}: {size} parameters; tests/arch_configs.py misses a size field of this family"
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def unmatched_targets(model, targets, lora_params) -> set[str]:
    """Registered LoRA targets that adapted nothing: neither a module of that name got LoRA, nor did
    peft turn the name into a fused-expert parameter target (transformers 5 stacks MoE experts)."""
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in lora_params}
    peft_config = model.peft_config["default"]
    remaining = set(peft_config.target_modules or ())
    converted = {t for t in targets if t not in remaining} if peft_config.target_parameters else set()
    return set(targets) - adapted - converted


def lora_state(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_lora_step_and_generate(case, plugins, tokenizers, tmp_path):
    import torch

    from swiftkit.config import SftConfig
    from swiftkit.core.choices import choose
    from swiftkit.data.encode import encode_rows
    from swiftkit.inference import TransformersEngine
    from swiftkit.models import load_model, set_num_threads
    from swiftkit.templates.selection import load_tokenizer_and_template
    from swiftkit.templates.template import OWN_TEMPLATE
    from swiftkit.train.collate import make_collator

    entry = runnable_type(case)
    tokenizer = tokenizers[None if entry.template else "chatml"]
    model_dir = save_tiny(case, tokenizer, tmp_path / "model")
    flat = {"model": str(model_dir), "model_type": entry.type, "dataset": ["unused.jsonl"], "lora_rank": 4}
    if entry.lora_target_modules:
        flat["target_modules"] = list(entry.lora_target_modules)
    cfg = SftConfig.from_flat(flat)
    set_num_threads(cfg.model.num_threads)
    host, regs = plugins

    resolved, tok, template = load_tokenizer_and_template(cfg.model, cfg.template, regs)
    assert resolved.entry is not None and resolved.entry.type == entry.type
    assert resolved.model_type == case.model_type
    assert template.name == (entry.template or OWN_TEMPLATE)
    model = load_model(resolved, torch_dtype=cfg.model.torch_dtype)
    assert type(model).__name__ == case.architecture
    model = choose(host, "tuner", cfg.tuner.train_type, model=model, config=cfg)
    before = lora_state(model)
    assert before, f"{case.id}: LoRA ({', '.join(cfg.tuner.target_modules)}) adapted no module"
    if entry.lora_target_modules:
        missing = unmatched_targets(model, entry.lora_target_modules, before)
        assert not missing, f"{case.id}: registered lora_target_modules {missing} name no module of {case.architecture}"

    rows, skipped = encode_rows([{"messages": CONVERSATION}, {"messages": CONVERSATION[:2]}], template)
    assert skipped == 0 and all(any(t != -100 for t in r["labels"]) for r in rows)
    batch = make_collator(tok, padding_free=False)(rows)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(**batch).loss
    assert math.isfinite(loss.item()), f"{case.id}: loss {loss.item()}"
    loss.backward()
    optimizer.step()
    after = lora_state(model)
    assert any(not torch.equal(before[n], after[n]) for n in before), f"{case.id}: no LoRA weight changed"

    model.eval()
    engine = TransformersEngine(model, template)
    prompt = CONVERSATION[:1]
    replies = engine.generate([prompt], max_new_tokens=3)
    assert len(replies) == 1 and isinstance(replies[0], str)
    # The reply may be empty (a random model can stop at once): count the tokens with stops disabled.
    ids = torch.tensor([engine.prompt_ids(prompt)])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3,
                             min_new_tokens=3, do_sample=False, pad_token_id=engine.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 3, f"{case.id}: generate produced {out.shape[1] - ids.shape[1]} tokens"
