"""``swiftkit data lint|preview``: check a dataset, or show one encoded row, without loading weights.

``lint`` prints every problem as ``file:line: severity: message [kind]`` (up to
``--max_problems``), a count per kind and a summary; it exits 1 when there are errors. ``preview``
prints one row rendered by the chat template with the tokens that get loss marked (``[[...]]``, or
green on a terminal), and with ``--show_tokens`` one line per token.
"""

from __future__ import annotations

import sys

from swiftkit.config import DataLintConfig, DataPreviewConfig
from swiftkit.core.errors import ConfigError
from swiftkit.data import load_rows
from swiftkit.data.lint import lint_dataset
from swiftkit.data.vision import VisionEncoder
from swiftkit.models import is_vision_checkpoint, load_processor
from swiftkit.templates.selection import load_tokenizer_and_template


def _template(cfg, registries):
    """The template training would use (only the tokenizer is loaded), or None without --model. A vision-language
    model's is its :class:`~swiftkit.data.vision.VisionEncoder` (the processor is loaded too): rows with images
    are checked with their images' tokens put in."""
    if not cfg.model.model:
        return None
    resolved, _, template = load_tokenizer_and_template(cfg.model, cfg.template, registries,
                                                        pretrain=cfg.tool.pretrain)
    if is_vision_checkpoint(resolved) and not cfg.tool.pretrain:
        return VisionEncoder(template, load_processor(resolved, trust_remote_code=cfg.model.trust_remote_code))
    return template


def image_token_id(template) -> int | None:
    """The token a vision-language model's processor repeats for an image (None for a text model)."""
    processor = getattr(template, "processor", None)
    token_id = getattr(processor, "image_token_id", None)
    if isinstance(token_id, int):
        return token_id
    token = getattr(processor, "image_token", None)
    return template.tokenizer.convert_tokens_to_ids(token) if isinstance(token, str) else None


def _data_options(cfg) -> dict:
    d = cfg.data
    return dict(text_only=cfg.tool.pretrain, columns=d.column_map, seed=d.data_seed, model_name=d.model_name,
                model_author=d.model_author, use_hf=cfg.model.use_hf, cache_dir=cfg.model.cache_dir,
                max_row_bytes=d.max_row_bytes)


class DataLintRecipe:
    """Report every problem in ``--dataset`` (exit status 1 when there are errors)."""

    def __init__(self, config: DataLintConfig, host, out=None):
        self.config = config
        self.host = host
        self.out = out or sys.stdout

    def setup(self) -> None:
        self.template = _template(self.config, self.host.registries)

    def run(self) -> dict:
        cfg, out = self.config, self.out
        report = lint_dataset(cfg.data.dataset, registries=self.host.registries, template=self.template,
                              rlhf_type=cfg.tool.rlhf_type, **_data_options(cfg))
        limit = cfg.tool.max_problems
        for problem in report.problems[:limit]:
            print(problem, file=out)
        if len(report.problems) > limit:
            print(f"... {len(report.problems) - limit} more (raise --max_problems to see them)", file=out)
        if report.problems:
            print("\ncounts:", file=out)
            for severity, kind, count in report.counts():
                print(f"  {severity:<8}{kind:<20}{count}", file=out)
        checked = ("rows, tokenized with the chat template" if self.template is not None
                   else "rows (pass --model to also check tokenized lengths)")
        print(f"\n{report.summary()}; checked {checked}", file=out)
        return {"exit_code": 1 if report.errors else 0, "problems": len(report.problems), "errors": len(report.errors)}


def image_runs(ids: list[int], image_id: int | None) -> list[tuple[int, int]]:
    """``(first position, count)`` of each run of an image's tokens."""
    runs: list[tuple[int, int]] = []
    for pos, token in enumerate(ids):
        if image_id is None or token != image_id:
            continue
        if runs and runs[-1][0] + runs[-1][1] == pos:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((pos, 1))
    return runs


def _marked(tokenizer, ids: list[int], labels: list[int], color: bool, image_id: int | None = None) -> str:
    """The decoded row with the trained tokens marked; a run of image tokens is shown once with its count."""
    start, end = ("\x1b[32m", "\x1b[0m") if color else ("[[", "]]")
    runs = dict(image_runs(ids, image_id))
    parts, i = [], 0
    while i < len(ids):
        if i in runs:
            parts.append(f"{tokenizer.convert_ids_to_tokens(ids[i])}×{runs[i]}")
            i += runs[i]
            continue
        trained = labels[i] != -100
        j = i
        while j < len(ids) and (labels[j] != -100) == trained and j not in runs:
            j += 1
        text = tokenizer.decode(ids[i:j], skip_special_tokens=False)
        parts.append(f"{start}{text}{end}" if trained else text)
        i = j
    return "".join(parts)


class DataPreviewRecipe:
    """Print one encoded ``--dataset`` row with the tokens that get loss marked."""

    def __init__(self, config: DataPreviewConfig, host, out=None):
        self.config = config
        self.host = host
        self.out = out or sys.stdout

    def setup(self) -> None:
        self.template = _template(self.config, self.host.registries)

    def run(self) -> dict:
        cfg, out, template = self.config, self.out, self.template
        rows = load_rows(cfg.data.dataset, registries=self.host.registries, skip_bad_rows=True,
                         **_data_options(cfg))  # `data lint` reports the bad ones
        index = cfg.tool.index
        if index >= len(rows):
            raise ConfigError(f"--index {index} is past the last usable row ({len(rows)} loaded)")
        row = rows[index]
        enc = template.encode(row)
        ids, labels = enc["input_ids"], enc["labels"]
        trained = sum(label != -100 for label in labels)
        tok = template.tokenizer
        color = out.isatty() if hasattr(out, "isatty") else False
        print(f"row {index}: {row['_origin']}  template {template.name}", file=out)
        print(f"{len(ids)} tokens, {trained} trained (marked {'in green' if color else '[[like this]]'})\n", file=out)
        image_id = image_token_id(template) if row.get("images") else None
        runs = image_runs(ids, image_id)
        if runs:
            shown = ", ".join(f"{pos}-{pos + n - 1}" for pos, n in runs)
            print(f"{len(row['images'])} image(s): {sum(n for _, n in runs)} image tokens "
                  f"({tok.convert_ids_to_tokens(image_id)}; positions {shown})\n", file=out)
        if row.get("videos"):
            print(f"{len(row['videos'])} video(s), their tokens put in by the processor\n", file=out)
        print(_marked(tok, ids, labels, color, image_id), file=out)
        if cfg.tool.show_tokens:
            print("\n  pos      id  loss  token", file=out)
            for pos, (i, label) in enumerate(zip(ids, labels)):
                print(f"  {pos:>3} {i:>7}  {'yes' if label != -100 else '   '}   {tok.convert_ids_to_tokens(i)!r}",
                      file=out)
        return {"exit_code": 0, "row": row["_origin"], "tokens": len(ids), "trained": trained}
