"""Field groups of evaluation: `swiftkit eval`'s flags, and the benchmarks sft/rlhf run while training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from swiftkit.config.groups import _check, arg, json_object

NATIVE_DATASET_ARGS = ("subsets", "split", "few_shot")


def benchmark_spec(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME=PATH`` (a registered benchmark run on a local file or folder) as ``(name, path)``."""
    name, sep, path = text.partition("=")
    return name.strip(), (path.strip() or None) if sep else None


def _check_benchmarks(values: list[str], flag: str) -> None:
    for value in values:
        name, path = benchmark_spec(value)
        _check(bool(name), f"{flag} {value!r}: a benchmark name is missing before '='")
        _check(path is not None or "=" not in value, f"{flag} {value!r}: the path after '=' is empty")


@dataclass(frozen=True)
class EvalArgs:
    eval_dataset: list[str] = arg(
        ["qa"], "Benchmarks to run: registered names (`swiftkit list benchmarks`: mmlu, gsm8k, ...; loaded from the "
        "hub), NAME=PATH to run a registered benchmark on a local file or folder in its native layout (offline), "
        "qa (scores the replies to --val_dataset rows against their reference answers), or a plugin's "
        "(swiftkit_get_eval_benchmark)."
    )
    eval_limit: Optional[int] = arg(None, "Score at most this many items per benchmark (the first ones).")
    eval_output_dir: str = arg(
        "eval_output", "Where each evaluation writes its folder (metrics.json, samples.jsonl per benchmark, "
        "summary.json; report.json/md/png with --compare) and keeps its cache of per-item results."
    )
    eval_backend: Literal["native", "evalscope"] = arg(
        "native", "native: swiftkit's own evaluators, in this process; evalscope: hand the benchmarks to evalscope "
        "(run in its own environment, --evalscope_env) pointed at a server this command starts, or at --eval_url."
    )
    eval_url: Optional[str] = arg(
        None, "Evaluate a running OpenAI-compatible server (swiftkit deploy, vLLM, ...) at this base URL, e.g. "
        "http://127.0.0.1:8000, instead of loading --model/--adapters. Log-likelihood benchmarks need the server "
        "to return prompt log-probabilities (completions with echo and logprobs)."
    )
    eval_model: Optional[str] = arg(None, "With --eval_url: the served model name (default: the server's first model).")
    api_key: Optional[str] = arg(None, "With --eval_url: the API key sent as `Authorization: Bearer <key>`.")
    eval_num_proc: int = arg(4, "Requests in flight at once to --eval_url or to the server the evalscope backend uses.")
    eval_few_shot: Optional[int] = arg(
        None, "Solved examples put before each question (default: the benchmark card's, e.g. 5 for mmlu); taken "
        "from the benchmark's few-shot split, or from its own items (never the item asked)."
    )
    eval_chat_template: Optional[bool] = arg(
        None, "Render log-likelihood prompts with the model's chat template (default: yes in this process when the "
        "template has one; --eval_url scores plain text, its template being on the server). false scores plain "
        "text as base-model harnesses do."
    )
    compare: list[str] = arg(
        [], "Also evaluate these models with the same benchmarks, template and backend, and write report.json/md/png "
        "with per-benchmark deltas and bootstrap confidence intervals: `base` (the base model of --adapters) "
        "and/or other checkpoints. The first is the baseline; --model/--adapters is compared last."
    )
    allow_code_execution: bool = arg(
        False, "Let code benchmarks (humaneval, mbpp) execute the generated programs: each runs in a subprocess of "
        "its own with --eval_code_timeout and --eval_code_memory_mb, in an empty temporary folder, without "
        "network isolation. Refused without this flag."
    )
    eval_code_timeout: float = arg(
        10.0, "Code benchmarks: seconds one program may run (wall clock) before it is killed."
    )
    eval_code_memory_mb: int = arg(1024, "Code benchmarks: address-space limit of one program, in MiB.")
    eval_num_samples: int = arg(
        1, "Code benchmarks: programs generated per problem (pass@k is reported for k = 1 and every power of ten up "
        "to this; more than 1 needs --temperature > 0)."
    )
    eval_cache: bool = arg(
        True, "Keep each item's result under --eval_output_dir/cache as soon as it is scored, so rerunning the same "
        "evaluation after a crash continues where it stopped (false: score everything again)."
    )
    eval_dataset_args: Optional[str] = arg(
        None, "Per-benchmark settings as JSON, e.g. '{\"mmlu\": {\"subsets\": [\"anatomy\"], \"few_shot\": 0}}' "
        "(native keys: subsets, split, few_shot; with --eval_backend evalscope the object is passed on as "
        "evalscope's dataset_args)."
    )
    extra_eval_args: Optional[str] = arg(
        None, "--eval_backend evalscope: more settings of evalscope's task as JSON (e.g. '{\"eval_batch_size\": 8}')."
    )
    evalscope_env: Optional[str] = arg(
        None, "--eval_backend evalscope: the virtual environment evalscope runs in (created on first use, "
        "default ~/.cache/swiftkit/evalscope-<version>); not needed when evalscope imports in this environment."
    )

    def __post_init__(self):
        _check(bool(self.eval_dataset), "--eval_dataset needs at least one benchmark name")
        _check_benchmarks(self.eval_dataset, "--eval_dataset")
        _check(self.eval_limit is None or self.eval_limit > 0, "--eval_limit must be > 0")
        _check(self.eval_few_shot is None or self.eval_few_shot >= 0, "--eval_few_shot must be >= 0")
        _check(self.eval_num_proc >= 1, "--eval_num_proc must be >= 1")
        _check(self.eval_code_timeout > 0, "--eval_code_timeout must be > 0")
        _check(self.eval_code_memory_mb >= 64, "--eval_code_memory_mb must be >= 64")
        _check(self.eval_num_samples >= 1, "--eval_num_samples must be >= 1")
        _check(self.eval_url is None or self.eval_url.startswith(("http://", "https://")),
               f"--eval_url must start with http:// or https://, got {self.eval_url!r}")
        _check(self.eval_model is None or self.eval_url is not None, "--eval_model names a model of --eval_url")
        _check(self.api_key is None or self.eval_url is not None,
               "--api_key is sent to --eval_url; without --eval_url there is no server to send it to")
        _check(not (self.compare and self.eval_url), "--compare evaluates local models; with --eval_url evaluate "
               "each server in its own run")
        if self.eval_dataset_args is not None:
            for name, value in self.dataset_args().items():
                _check(isinstance(value, dict), f"--eval_dataset_args: the value of {name!r} must be an object")
                unknown = sorted(set(value) - set(NATIVE_DATASET_ARGS))
                _check(self.eval_backend != "native" or not unknown,
                       f"--eval_dataset_args {name}: {', '.join(unknown)} not known to the native evaluators, which "
                       f"take {', '.join(NATIVE_DATASET_ARGS)} (other keys are evalscope's: --eval_backend evalscope)")
        if self.extra_eval_args is not None:
            self.extra_args()
            _check(self.eval_backend == "evalscope", "--extra_eval_args is passed to evalscope: add "
                   "--eval_backend evalscope")

    def dataset_args(self) -> dict:
        """``--eval_dataset_args`` as a dict (empty when not given)."""
        if self.eval_dataset_args is None:
            return {}
        return json_object(self.eval_dataset_args, "--eval_dataset_args", '{"mmlu": {"few_shot": 0}}')

    def extra_args(self) -> dict:
        """``--extra_eval_args`` as a dict (empty when not given)."""
        if self.extra_eval_args is None:
            return {}
        return json_object(self.extra_eval_args, "--extra_eval_args", '{"eval_batch_size": 8}')


@dataclass(frozen=True)
class BenchmarkEvalArgs:
    """Benchmarks scored on the model being trained, at every evaluation (sft, rlhf)."""

    eval_benchmarks: list[str] = arg(
        [], "Benchmarks (names or NAME=PATH, as `swiftkit eval --eval_dataset` takes them) run on the model being "
        "trained at every evaluation (--eval_steps), in eval mode, with no second copy of the model; their scores "
        "are logged beside the eval loss as eval_<benchmark>_<metric> and may be --metric_for_best_model. "
        "Alias: --eval_dataset (ms-swift).",
        aliases=("eval_dataset",),
    )
    eval_limit: Optional[int] = arg(
        None, "Items per --eval_benchmarks benchmark scored at each evaluation (the first ones; default all)."
    )
    eval_few_shot: Optional[int] = arg(None, "Solved examples before each --eval_benchmarks question (default: the "
                                             "benchmark card's).")

    def __post_init__(self):
        _check_benchmarks(self.eval_benchmarks, "--eval_benchmarks")
        _check("qa" not in [benchmark_spec(b)[0] for b in self.eval_benchmarks],
               "--eval_benchmarks qa: replies to the validation rows are scored during training with "
               "--predict_with_generate --metric rouge-l|bleu")
        _check(self.eval_limit is None or self.eval_limit > 0, "--eval_limit must be > 0")
        _check(self.eval_few_shot is None or self.eval_few_shot >= 0, "--eval_few_shot must be >= 0")
