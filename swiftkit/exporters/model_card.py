"""The model card (README.md) every export and quantization writes into its folder.

The card opens with the YAML front matter the Hugging Face hub (and ModelScope) read: ``base_model`` when it is
a hub id, ``library_name`` (transformers, or gguf for a GGUF folder), ``tags`` (swiftkit, the method,
``quantized``) and ``datasets`` when the training data came from the hub. The body says what the artifact is,
where its weights came from (base model, adapters merged, the training run's data and template fingerprints
and hyperparameters from the run's ``args.json`` / ``manifest.json``), the scores of any ``swiftkit eval`` of
those adapters, the parity check against the source model, how to load it, and the swiftkit version.

The card describes what the files are; it never fails the export: a missing or unreadable record (no
manifest, no args.json, no eval) leaves its section out. Local paths are not written into the card (it may be
published): a base model or dataset given as a local path shows as its folder or file name.
"""

from __future__ import annotations

from pathlib import Path

from swiftkit import __version__
from swiftkit.exporters.card_records import eval_results, training_rows, training_run
from swiftkit.exporters.card_text import (
    dataset_hub_id,
    gguf_usage,
    is_hub_id,
    is_scalar,
    listed_files,
    number,
    public_name,
    public_run_path,
    table,
    transformers_usage,
)

OWN_TEMPLATE = "model"  # the template name meaning the tokenizer's own chat template (swiftkit.templates)

QUANTIZERS = ("bnb", "gptq", "awq", "torchao", "gguf")
_FULL_PRECISION_GGUF = ("f32", "f16", "bf16")
_FILES_SHOWN = 12


def write_model_card(folder: Path, *, info: dict, config, parity: dict | None = None) -> Path:
    """Write ``folder/README.md`` describing the artifact in ``folder``; returns its path.

    ``info`` (every key optional):

    * ``method`` (or ``export_format``): the format or quantizer, e.g. ``merged``, ``gptq``, ``gguf``; default:
      ``config.quantize.method`` or ``config.export.export_format``;
    * ``label``: the artifact's name, e.g. ``torchao-int8``; ``description``: one line about the method;
    * ``base_model``: the base weights' local folder; ``base_model_name``: what the user passed (a hub id or a
      registry name); ``base_model_id``: the base's hub id when known (e.g. from the model registry);
    * ``adapters``: the adapter (or checkpoint) folders merged in, whose run records are read;
    * ``template``: the chat template's name;
    * ``quantization``: what the quantizer used (``bits``, ``group_size``, ``gguf_type``, ``quant_type``, ...;
      anything else is listed as given); ``quantized``: override whether the weights count as quantized.

    ``parity``: the parity report (see :func:`_parity_rows` for the keys read), or None when it was skipped.
    """
    folder = Path(folder)
    card = ModelCard(folder, info or {}, config, parity)
    path = folder / "README.md"
    path.write_text(card.text(), encoding="utf-8")
    return path


class ModelCard:
    """The facts of one card, gathered once; :meth:`text` renders them."""

    def __init__(self, folder: Path, info: dict, config, parity: dict | None):
        self.folder, self.info, self.config, self.parity = folder, info, config, parity
        self.method = str(info.get("method") or info.get("export_format") or _setting(config, "quantize", "method")
                          or _setting(config, "export", "export_format") or "merged")
        self.label = str(info.get("label") or self.method)
        self.gguf_files = sorted(p.name for p in folder.glob("*.gguf"))
        self.is_gguf = self.method == "gguf" or bool(self.gguf_files)
        self.quant = _quant_settings(self.method, info, config)
        self.quantized = bool(info["quantized"]) if "quantized" in info else _is_quantized(self.method, self.quant)
        self.adapters = [Path(p) for p in info.get("adapters") or []]
        self.runs = [run for run in (training_run(p) for p in self._trained_folders()) if run]
        self.evals = [e for p in self.adapters for e in eval_results(p)]
        self.repo_id = _setting(config, "hub", "hub_model_id")
        self.use_hf = bool(_setting(config, "model", "use_hf"))

    def _trained_folders(self) -> list[Path]:
        """The adapters, or a fully fine-tuned base (a checkpoint with args.json) when there are none."""
        if self.adapters:
            return self.adapters
        base = self.info.get("base_model")
        return [Path(base)] if base and Path(base).is_dir() else []

    # -- facts ------------------------------------------------------------------------------------

    def base_name(self) -> str:
        """The base model as a reader knows it: its hub id, else the name the user gave, else its folder name."""
        hub_id = self.base_hub_id()
        if hub_id:
            return hub_id
        for value in (self.info.get("base_model_name"), *(r["args"].get("model") for r in self.runs),
                      self.info.get("base_model")):
            if value:
                return public_name(str(value))
        return ""

    def base_hub_id(self) -> str | None:
        candidates = [self.info.get("base_model_id"), self.info.get("base_model_name"),
                      *(r["args"].get("model") for r in self.runs), _setting(self.config, "model", "model")]
        return next((str(c) for c in candidates if c and is_hub_id(str(c))), None)

    def datasets(self) -> list[str]:
        specs = [spec for r in self.runs for spec in r["args"].get("dataset") or []]
        return list(dict.fromkeys(d for d in (dataset_hub_id(s) for s in specs) if d))

    def front_matter(self) -> dict:
        meta: dict = {}
        base = self.base_hub_id()
        if base:
            meta["base_model"] = base
            if self.adapters or self.runs:
                meta["base_model_relation"] = "finetune"
            elif self.quantized:
                meta["base_model_relation"] = "quantized"
        meta["library_name"] = "gguf" if self.is_gguf else "transformers"
        meta["pipeline_tag"] = "text-generation"
        tags = ["swiftkit", self.method]
        if self.quantized:
            tags.append("quantized")
        if self.adapters:
            tags.append("lora-merged")
        meta["tags"] = list(dict.fromkeys(tags))
        datasets = self.datasets()
        if datasets:
            meta["datasets"] = datasets
        return meta

    # -- rendering --------------------------------------------------------------------------------

    def text(self) -> str:
        import yaml  # defers yaml

        head = yaml.safe_dump(self.front_matter(), sort_keys=False, allow_unicode=True).strip()
        sections = [self._title(), self._artifact(), self._source(), *self._training(), self._evaluation(),
                    self._parity(), self._usage(), self._footer()]
        return f"---\n{head}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n"

    def _title(self) -> str:
        name = self.repo_id or self.folder.name
        base = self.base_name()
        what = f"{_what(self.method, self.quant, self.is_gguf)} of {base}" if base else _what(
            self.method, self.quant, self.is_gguf)
        what += ", with its trained adapters merged in" if self.adapters else ""
        return f"# {name}\n\n{what[0].upper()}{what[1:]}, made with swiftkit."

    def _artifact(self) -> str:
        rows = [("Method", self.method), ("Artifact", self.label)]
        if self.info.get("description"):
            rows.append(("About the method", self.info["description"]))
        rows += [(_QUANT_LABELS.get(k, k.replace("_", " ")), v) for k, v in self.quant.items()]
        rows.append(("Quantized", "yes" if self.quantized else "no (full precision)"))
        files = listed_files(self.folder)
        if files:
            shown = ", ".join(f"`{name}` ({size})" for name, size in files[:_FILES_SHOWN])
            more = len(files) - _FILES_SHOWN
            rows.append(("Files", shown + (f" and {more} more" if more > 0 else "")))
        return "## Artifact\n\n" + table(("Field", "Value"), rows)

    def _source(self) -> str:
        rows = []
        base = self.base_name()
        if base:
            rows.append(("Base model", base))
        if self.adapters:
            rows.append(("Adapters merged", ", ".join(public_run_path(p) for p in self.adapters)))
        template = self.info.get("template") or next((r["manifest"].get("template") for r in self.runs
                                                      if r["manifest"].get("template")), None)
        if template:
            name = "the base model's own" if template == OWN_TEMPLATE else f"swiftkit's {template}"
            rows.append(("Chat template", f"{name} (as in training; saved with the tokenizer)"))
        return "## Source\n\n" + table(("Field", "Value"), rows) if rows else ""

    def _training(self) -> list[str]:
        out = []
        for run in self.runs:
            title = "## Training" if len(self.runs) == 1 else f"## Training: {run['name']}"
            out.append(f"{title}\n\n" + table(("Field", "Value"), training_rows(run)))
        return out

    def _evaluation(self) -> str:
        rows = []
        for result in self.evals:
            for bench, metrics in result["results"].items():
                if isinstance(metrics, dict):
                    rows += [(bench, k, number(v)) for k, v in metrics.items() if is_scalar(v)]
        if not rows:
            return ""
        return ("## Evaluation\n\n`swiftkit eval` of the adapters before export:\n\n"
                + table(("Benchmark", "Metric", "Score"), rows))

    def _parity(self) -> str:
        if self.parity is None:
            return ""
        rows = _parity_rows(self.parity)
        intro = ("The written artifact was loaded back and compared with the source model (base + adapters) "
                 "on the same prompts:")
        return "## Parity with the source model\n\n" + intro + "\n\n" + table(("Check", "Result"), rows)

    def _usage(self) -> str:
        ref = self.repo_id or f"path/to/{self.folder.name}"
        if self.is_gguf:
            return "## How to use\n\n" + gguf_usage(self.folder, self.gguf_files, ref, self.use_hf and self.repo_id)
        return "## How to use\n\n" + transformers_usage(self.folder, self.method, ref,
                                                         ms=bool(self.repo_id and not self.use_hf))

    def _footer(self) -> str:
        return f"---\n\nWritten by swiftkit {__version__} (`swiftkit {_command(self.config)}`)."


# -- gathering ---------------------------------------------------------------------------------------


def _setting(config, group: str, name: str):
    return getattr(getattr(config, group, None), name, None)


def _command(config) -> str:
    return str(getattr(config, "command", "") or "export")


_QUANT_LABELS = {"bits": "Bits per weight", "group_size": "Group size", "gguf_type": "GGUF tensor type",
                 "quant_type": "4-bit type", "double_quant": "Double quantization",
                 "n_samples": "Calibration conversations", "seqlen": "Calibration length (tokens)"}


def _quant_settings(method: str, info: dict, config) -> dict:
    """What the quantizer used: ``info["quantization"]`` over the flags that apply to ``method``."""
    given = dict(info.get("quantization") or {})
    if method not in QUANTIZERS:
        return given
    q = getattr(config, "quantize", None)
    flags: dict = {}
    if q is not None:
        if method == "gguf":
            flags["gguf_type"] = q.gguf_kind
        else:
            flags["bits"] = q.quant_bits if q.quant_bits is not None else 4
            if method in ("gptq", "awq") or (method == "torchao" and flags["bits"] <= 4):
                flags["group_size"] = q.group_size
            if method == "bnb" and flags["bits"] == 4:
                flags["quant_type"] = q.bnb_4bit_quant_type
                flags["double_quant"] = q.bnb_4bit_use_double_quant
            if method in ("gptq", "awq"):
                flags["n_samples"], flags["seqlen"] = q.quant_n_samples, q.quant_seqlen
    return {**flags, **given}


def _is_quantized(method: str, quant: dict) -> bool:
    if method == "gguf":
        return str(quant.get("gguf_type", "f16")).lower() not in _FULL_PRECISION_GGUF
    bits = quant.get("bits")
    if method in QUANTIZERS:
        return True
    return isinstance(bits, int) and bits < 16


def _what(method: str, quant: dict, is_gguf: bool) -> str:
    if is_gguf:
        return f"a GGUF file ({quant.get('gguf_type', 'f16')})"
    if method == "merged":
        return "a full-precision transformers model"
    bits = quant.get("bits")
    return f"a {bits}-bit {method} quantization" if bits else f"a {method} export"


def _parity_rows(parity: dict) -> list[tuple]:
    """Rows of the parity table. Keys read: ``template_ok`` (chat-template ids equal), ``stop_tokens_ok``,
    ``top1_agreement`` (share of positions whose argmax agrees), ``max_logit_diff``, ``mean_logit_diff``,
    ``perplexity_before`` / ``perplexity_after`` (or ``perplexity: {"source", "artifact"}``), ``greedy_match``
    and ``ok``; any other scalar is listed as given."""
    shown = {"template_ok": "Chat template ids identical", "stop_tokens_ok": "Stop tokens identical",
             "top1_agreement": "Top-1 token agreement", "max_logit_diff": "Max logit difference",
             "mean_logit_diff": "Mean logit difference", "perplexity_before": "Perplexity, source model",
             "perplexity_after": "Perplexity, this artifact", "greedy_match": "Greedy replies identical",
             "ok": "Passed"}
    flat = dict(parity)
    ppl = parity.get("perplexity")
    if isinstance(ppl, dict):
        flat.setdefault("perplexity_before", ppl.get("source", ppl.get("before")))
        flat.setdefault("perplexity_after", ppl.get("artifact", ppl.get("after")))
    rows = [(label, number(flat[key], percent=key == "top1_agreement"))
            for key, label in shown.items() if is_scalar(flat.get(key))]
    rows += [(k.replace("_", " "), number(v)) for k, v in parity.items()
             if k not in shown and k != "perplexity" and is_scalar(v)]
    return rows
