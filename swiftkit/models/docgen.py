"""Generate ``docs/supported-models.md`` from the model registry cards.

    python -m swiftkit.models.docgen > docs/supported-models.md

A test regenerates the page and compares it with the committed one, so the list cannot drift.
"""

from __future__ import annotations

from collections import defaultdict

from swiftkit.core.cards import markdown_cell
from swiftkit.core.resources import data_dir
from swiftkit.models.registry import load_model_card

HEADER = """# Supported models

Generated from `model_registry/*.yaml` by `python -m swiftkit.models.docgen`; do not edit by hand.
`--model NAME` takes a name below (or a hub id, or a local directory); `--model_type TYPE` picks a
type for an unregistered model. `swiftkit list models [--family F] [--tag T] [--json]` prints the
same entries, with those added by installed plugins. Template `own` means the tokenizer's chat
template is used; LoRA `all-linear` means no special target modules are needed.
"""



def render() -> str:
    entries = [e for card in sorted(data_dir("model_registry").glob("*.yaml")) for e in load_model_card(card)]
    by_family: dict[str, list] = defaultdict(list)
    for e in entries:
        by_family[e.family].append(e)
    types = {e.type for e in entries}
    parts = [HEADER, f"{len(entries)} models in {len(types)} model types, {len(by_family)} families.", "",
             "| family | types | models |", "|---|---|---|"]
    parts += [f"| [{f}](#{f}) | {len({e.type for e in es})} | {len(es)} |" for f, es in sorted(by_family.items())]
    for family, items in sorted(by_family.items()):
        parts += ["", f'<a id="{family}"></a>', f"## {family}", "",
                  "| type | architecture | template | context | LoRA | requires | tags |",
                  "|---|---|---|---|---|---|---|"]
        seen = {}
        for e in items:
            seen.setdefault(e.type, e)
        for t, e in seen.items():
            lora = ", ".join(e.lora_target_modules) if e.lora_target_modules else "all-linear"
            parts.append(f"| `{t}` | {', '.join(e.architectures)} (`{e.model_type}`) | {e.template or 'own'} | "
                         f"{e.context_length or ''} | {lora} | {markdown_cell(', '.join(e.requires))} | "
                         f"{', '.join(e.tags)} |")
        parts += ["", "| name | type | ModelScope | Hugging Face |", "|---|---|---|---|"]
        for e in items:
            ms = f"`{e.ms_id}`" if e.ms_id else ""
            hf = f"`{e.hf_id}`" if e.hf_id else ""
            name = f"`{e.name}`" + (" (embedded)" if e.embedded else "")
            parts.append(f"| {name} | `{e.type}` | {ms} | {hf} |")
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
