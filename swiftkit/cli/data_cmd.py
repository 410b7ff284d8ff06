"""``swiftkit data lint|preview``: check a dataset, or show one encoded row, without loading weights.

``lint`` prints every problem as ``file:line: severity: message [kind]`` (up to
``--max_problems``), a count per kind and a summary; it exits 1 when there are errors. ``preview``
prints one row rendered by the chat template with the tokens that get loss marked (``[[...]]``, or
green on a terminal), and with ``--show_tokens`` one line per token.
"""

from __future__ import annotations

import sys

ACTIONS = {"lint": "Report every problem in --dataset (exit 1 on errors).",
           "preview": "Show one encoded row with its trained tokens marked."}


def _setup(cfg):
    from swiftkit.plugins import build_registries, get_plugin_manager

    registries = build_registries(get_plugin_manager(cfg.plugin.plugins, cfg.plugin.disable_plugins))
    template = None
    if cfg.model.model:
        from swiftkit.templates.selection import load_tokenizer_and_template

        _, _, template = load_tokenizer_and_template(cfg.model, cfg.template, registries,
                                                     pretrain=cfg.tool.pretrain)
    return registries, template


def _data_kwargs(cfg) -> dict:
    d = cfg.data
    return dict(text_only=cfg.tool.pretrain, columns=d.column_map, seed=d.data_seed, model_name=d.model_name,
                model_author=d.model_author, use_hf=cfg.model.use_hf, cache_dir=cfg.model.cache_dir)


def lint(cfg, out=None) -> int:
    out = out or sys.stdout
    from swiftkit.data.lint import lint_dataset

    registries, template = _setup(cfg)
    report = lint_dataset(cfg.data.dataset, registries=registries, template=template, rlhf_type=cfg.tool.rlhf_type,
                          **_data_kwargs(cfg))
    limit = cfg.tool.max_problems
    for problem in report.problems[:limit]:
        print(problem, file=out)
    if len(report.problems) > limit:
        print(f"... {len(report.problems) - limit} more (raise --max_problems to see them)", file=out)
    if report.problems:
        print("\ncounts:", file=out)
        for severity, kind, count in report.counts():
            print(f"  {severity:<8}{kind:<20}{count}", file=out)
    checked = "rows, tokenized with the chat template" if template is not None else "rows (pass --model to also check tokenized lengths)"
    print(f"\n{report.summary()}; checked {checked}", file=out)
    return 1 if report.errors else 0


def _marked(tokenizer, ids: list[int], labels: list[int], color: bool) -> str:
    start, end = ("\x1b[32m", "\x1b[0m") if color else ("[[", "]]")
    parts, i = [], 0
    while i < len(ids):
        trained = labels[i] != -100
        j = i
        while j < len(ids) and (labels[j] != -100) == trained:
            j += 1
        text = tokenizer.decode(ids[i:j], skip_special_tokens=False)
        parts.append(f"{start}{text}{end}" if trained else text)
        i = j
    return "".join(parts)


def preview(cfg, out=None) -> int:
    out = out or sys.stdout
    from swiftkit.data import load_rows

    registries, template = _setup(cfg)
    rows = load_rows(cfg.data.dataset, registry=registries.datasets, preprocessors=registries.preprocessors,
                     skip_bad_rows=True, **_data_kwargs(cfg))  # `data lint` reports the bad ones
    index = cfg.tool.index
    if index >= len(rows):
        from swiftkit.config import ConfigError

        raise ConfigError(f"--index {index} is past the last usable row ({len(rows)} loaded)")
    row = rows[index]
    enc = template.encode(row)
    ids, labels = enc["input_ids"], enc["labels"]
    trained = sum(label != -100 for label in labels)
    tok = template.tokenizer
    color = out.isatty() if hasattr(out, "isatty") else False
    print(f"row {index}: {row['_origin']}  template {template.name}", file=out)
    print(f"{len(ids)} tokens, {trained} trained (marked {'in green' if color else '[[like this]]'})\n", file=out)
    print(_marked(tok, ids, labels, color), file=out)
    if cfg.tool.show_tokens:
        print("\n  pos      id  loss  token", file=out)
        for pos, (i, label) in enumerate(zip(ids, labels)):
            print(f"  {pos:>3} {i:>7}  {'yes' if label != -100 else '   '}   {tok.convert_ids_to_tokens(i)!r}", file=out)
    return 0


def data_command(argv: list[str]) -> int:
    from swiftkit.cli.args import parse_config
    from swiftkit.config import COMMANDS

    if not argv or argv[0] in ("-h", "--help") or argv[0] not in ACTIONS:
        from swiftkit.registry import closest

        lines = "\n".join(f"  {name:<8} {text}" for name, text in ACTIONS.items())
        usage = f"usage: swiftkit data lint|preview --dataset ... [--model ...]\n\n{lines}\n"
        if argv and argv[0] not in ("-h", "--help"):
            print(f"swiftkit data: error: unknown action {argv[0]!r}{closest(argv[0], ACTIONS)}\n{usage}",
                  file=sys.stderr)
            return 2
        print(usage)
        return 0
    action, rest = argv[0], argv[1:]
    cfg = parse_config(COMMANDS[f"data {action}"], rest)
    return lint(cfg) if action == "lint" else preview(cfg)
