# valle — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# chromium + chromium-driver: the test that opens the demo's report.html in a headless browser
DEBIAN_PACKAGES := espeak-ng sox festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts chromium chromium-driver
# CI runs the slow end-to-end tests too; a developer's `make test` skips them (`make test-all` runs them).
MARKS ?= $(if $(CI),not gpu,not slow and not gpu)
DEMO_DIR ?= outputs/demo
DEMO_MINUTES ?= 20

.DEFAULT_GOAL := help
.PHONY: help setup system-deps test test-all lint format demo serve experiments clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

setup: system-deps $(STAMP) ## create .venv with valle (editable) and its test tools; install Debian's espeak-ng

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# DeepSpeed ships as source only and its build imports torch: build it against the venv's torch.
	$(PY) -m pip install --quiet wheel && $(PY) -m pip install --quiet --no-build-isolation 'deepspeed>=0.14'
	touch $(STAMP)

system-deps: ## Debian packages: espeak-ng (phonemes), festival voices and sox (built-in corpus), chromium (report test)
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: setup ## run the tests (CI=true adds the slow end-to-end ones)
	$(PY) -m pytest -m "$(MARKS)"

test-all: setup ## every CPU test, slow ones included
	$(PY) -m pytest -m "not gpu"

lint: setup ## ruff (rules and formatting) on src/, tests/, benchmarks/; mypy on src/valle
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy src/valle

format: setup ## rewrite src/, tests/, benchmarks/ in ruff's format (what `make lint` checks)
	$(VENV)/bin/ruff format src tests benchmarks

demo: setup ## the main job on the built-in corpus, offline (see README)
	$(PY) -m valle.demo out=$(DEMO_DIR) minutes=$(DEMO_MINUTES)

serve: setup ## serve the demo's model: OpenAI-compatible API and web page on http://127.0.0.1:8000
	@test -f $(DEMO_DIR)/model.pt || { echo "error: no $(DEMO_DIR)/model.pt; run make demo first"; exit 1; }
	$(PY) -m valle.serve ckpt=$(DEMO_DIR)/model.pt builtin_voices=$(DEMO_DIR)/voices voices_dir=$(DEMO_DIR)/uploaded_voices sampler.expected_codewords=0.3

experiments: ## list the experiment presets (python train.py experiment=NAME)
	@ls conf/experiment | sed 's/\.yaml$$//'

clean: ## remove outputs and caches (keeps .venv)
	rm -rf outputs .pytest_cache .ruff_cache .mypy_cache
