"""Generate ``docs/supported-datasets.md`` from the dataset registry cards.

    python -m swiftkit.data.docgen > docs/supported-datasets.md

A test regenerates the page and compares it with the committed one, so the list cannot drift.
"""

from __future__ import annotations

from swiftkit.core.cards import markdown_cell
from swiftkit.core.resources import data_dir
from swiftkit.data.registry import TASK_TAGS, load_cards

HEADER = """# Supported datasets

Generated from `dataset_registry/*.yaml` by `python -m swiftkit.data.docgen`; do not edit by hand.
Use a name with `--dataset NAME[#N]` (ModelScope by default, `--use_hf` for the Hugging Face
hub; `hf::NAME` / `ms::NAME` force one). `swiftkit list datasets --tag TAG [--json]` prints the same
entries, including those added by installed plugins.
"""

TASK_TITLES = {
    "sft": "Supervised fine-tuning (`swiftkit sft`)",
    "pretrain": "Pretraining corpora (`swiftkit pt`)",
    "preference": "Preference pairs (DPO, ORPO, SimPO, CPO)",
    "kto": "KTO (unpaired, labelled)",
    "reward": "Reward modelling",
    "grpo": "RL prompts with reference solutions (GRPO)",
}
assert set(TASK_TITLES) == set(TASK_TAGS)



def render() -> str:
    entries = [entry for entry, _ in load_cards(data_dir("dataset_registry"))]
    parts = [HEADER, f"{len(entries)} datasets.", ""]
    parts += ["| task | datasets |", "|---|---|"]
    by_task = {task: [e for e in entries if task in e.tags] for task in TASK_TAGS}
    parts += [f"| [{task}](#{task}) | {len(items)} |" for task, items in by_task.items()]
    for task, items in by_task.items():
        parts += ["", f'<a id="{task}"></a>', f"## {TASK_TITLES[task]}", "",
                  "| name | ModelScope | Hugging Face | subsets / split | tags | description |",
                  "|---|---|---|---|---|---|"]
        for e in sorted(items, key=lambda e: e.name):
            where = "/".join(e.subsets) if e.subsets else ""
            split = f"{where} ({e.split})" if where else e.split
            hub_ms = f"`{e.ms_id}`" if e.ms_id else ("local" if e.path else "")
            hub_hf = f"`{e.hf_id}`" if e.hf_id else ""
            tags = ", ".join(t for t in e.tags if t != task)
            parts.append(f"| `{e.name}` | {hub_ms} | {hub_hf} | {markdown_cell(split)} | {tags} | "
                         f"{markdown_cell(e.description)} |")
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
