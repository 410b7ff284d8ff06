"""Workarounds for upstream libraries, each version-gated and saying when it can go."""

from __future__ import annotations

import logging
import os
import warnings
from urllib.parse import urlparse


def silence_known_warnings() -> None:
    """Hide upstream warnings that say nothing actionable to a swiftkit user.

    - peft <= 0.21 reads ``model.is_gradient_checkpointing``, which transformers 5.24 deprecates
      (a FutureWarning on every adapter load). Remove once peft uses ``is_activation_checkpointing``.
    - TRL 1.16's configs declare ``gradient_checkpointing``, which transformers 5.24 renames
      ``activation_checkpointing`` (a FutureWarning on every `swiftkit rlhf` run, whatever the value).
      Remove once TRL's configs use the new name.
    - bitsandbytes 0.50 logs a warning whenever it is imported on a CPU with AVX512-BF16 (peft and
      transformers import it when it is installed, so every command printed it): its optional CPU kernel
      comes from the ``kernels`` package, which downloads it from the Hugging Face hub. The built-in path
      it falls back to is the one swiftkit uses and tests. Remove once bitsandbytes stops logging it.
    - torchao 0.18 logs "Failed to load ..._C_mxfp8..." (its CUDA-only kernels) on the ``torchao`` logger when
      imported on a CPU machine, and its import makes torch 2.13 log a deprecation of ``register_constant``
      for two enums (``torch.utils._pytree``). Remove once torchao imports quietly on CPU.
    - bitsandbytes 0.50's 8-bit layers warn on every CPU forward that float32 inputs are cast to float16
      (what LLM.int8 does by design). Remove once bitsandbytes warns once per process.
    """
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning)
    logging.getLogger("torchao").setLevel(logging.ERROR)
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast from")


def gptqmodel_workarounds(log_dir) -> None:
    """Let GPTQModel 7.6 quantize on a small CPU machine without writing into the working directory.

    - It sizes its CPU worker pool at ``(os.cpu_count() + 1) // 2`` and then asks it for 2 model-loader
      workers, so with 1 or 2 CPUs ``quantize()`` fails ("Virtual pool 'model_loader:cpu' requests 2 workers
      but parent 'cpu' only has 1"). Its own ``GPTQMODEL_CPU_WORKERS`` sizes the pool when it is first built;
      a value the user set is kept. Remove when GPTQModel caps the loader pool at the CPU pool.
    - Every quantization writes a per-layer log into ``./logs`` of the current directory; it goes to
      ``log_dir`` instead (a scratch folder the caller removes). Remove when the folder is configurable.
    """
    if (os.cpu_count() or 1) <= 2:
        os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    try:
        from gptqmodel.looper import loop_processor  # defers gptqmodel
    except ImportError:
        return
    if hasattr(loop_processor, "_PROJECT_LOG_DIR"):
        loop_processor._PROJECT_LOG_DIR = log_dir


def allow_mlflow_file_store(uri: str) -> None:
    """Let MLflow open the local file-system tracking store at ``uri``.

    MLflow 3.13 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is true, and the database
    store it recommends (``sqlite:///``) needs SQLAlchemy, which ``mlflow-skinny`` does not ship. The
    offline ``--report_to mlflow`` store is a directory in the run folder, so it opts in: for local
    URIs only, keeping a value the user set; an MLflow without the gate (before 3.13) is left alone.
    Remove when that store moves to a backend ``mlflow-skinny`` opens as it is.
    """
    import mlflow.environment_variables as mlflow_env  # defers mlflow

    if urlparse(uri).scheme in ("", "file") and hasattr(mlflow_env, "MLFLOW_ALLOW_FILE_STORE"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def mend_llama4_outputs(model) -> None:
    """Let transformers 5.24's Llama 4 vision model run a forward.

    ``Llama4ForConditionalGeneration.forward`` returns ``outputs.image_outputs`` of its language model, whose
    output class (``MoeCausalLMOutputWithPast``) has no such field, so every forward raises AttributeError. A
    forward hook on the language model gives each of its outputs ``image_outputs = None`` (the field
    ``Llama4CausalLMOutputWithPast`` declares optional). A no-op for any other model and once the output has
    the field. Remove when transformers' Llama 4 forward stops reading it.
    """
    if type(model).__name__ != "Llama4ForConditionalGeneration":
        return
    language_model = model.language_model

    def add_field(_module, _args, output):
        if not isinstance(output, tuple) and not hasattr(output, "image_outputs"):
            output.image_outputs = None
        return output

    language_model.register_forward_hook(add_field)
