# Two commands set up a fresh machine: `make run` (install + sample conversation) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# llama-cpp-python ships only as source: build it portable (no -march=native) so the
# cached wheel runs on any x86-64 machine with AVX2.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint models serve clean

$(BIN)/python:
	command -v $(PYTHON) >/dev/null || PYTHON=python3; $${PYTHON:-$(PYTHON)} -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.stamp-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-run
	$(BIN)/pip install -e ".[dev]"
	touch $@

models: $(VENV)/.stamp-run
	$(BIN)/coda setup

run: models
	$(BIN)/coda chat samples/conversation/*.wav --out out/conversation

test: $(VENV)/.stamp-dev models
	$(BIN)/python -m pytest

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
