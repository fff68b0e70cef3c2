# Two commands matter: `make repro` (the whole pipeline) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# DVC stage commands run `python` from PATH: put the venv first so stages use it.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export WANDB_SILENT := true
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install repro test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

repro: install
	dvc repro

test: install
	WANDB_MODE=$${WANDB_MODE:-offline} $(PY) -m pytest -q

bench: install
	$(PY) -m bench.recurrence_vs_parallel
	$(PY) -m bench.train_throughput

clean:
	rm -rf runs reports data/raw data/tokenized data/downloads wandb
