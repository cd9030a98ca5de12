# deepseek-rag: `make demo` sets up .venv and runs the main job offline; `make test` runs every suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

# Every distribution of the repo, installed editable. torch comes first and pinned: an unpinned
# torch would pull a multi-GB CUDA build; with 2.13.0 present the rest finds it satisfied.
DISTRIBUTIONS := -e ".[torch,export,dev,llm,bench,serve,mlflow]" -e adapters/llama-index -e adapters/langchain -e "finetune[dev]"

.PHONY: demo test install clean

$(STAMP): pyproject.toml adapters/llama-index/pyproject.toml adapters/langchain/pyproject.toml finetune/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet $(DISTRIBUTIONS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deepseek-rag demo

test: $(STAMP)
	$(PY) -m pytest -q tests adapters/llama-index/tests adapters/langchain/tests finetune/tests

clean:
	rm -rf $(VENV) .pytest_cache
