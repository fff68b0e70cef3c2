# Two commands matter: `make repro` (the whole pipeline) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# DVC stage commands run `python` from PATH: put the venv first so stages use it.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export WANDB_SILENT := true
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install repro repro-full repro-long test bench clean stage sync exps

TORCH ?= 2.13.0

# pip byte-compiles at install (35 s of CPU): without it, the tests' many concurrent processes each compile the
# same modules on first import, and a fresh clone's make test took 609 s instead of 460 (docs/results.md)
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==$(TORCH)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

# dvc.yaml is generated from params.yaml: regenerate it first (a no-op when it is current). A fresh clone skips the
# report stage (its outputs are committed and come out the same): it runs once more then (~15 s, same bytes), so that
# the report's W&B run exists for `make sync`.
REPORT_RUN := logs/report/wandb.json
repro: install
	$(PY) -m pipeline grid
	dvc repro
	@test -f $(REPORT_RUN) || dvc repro --force --single-item report

# The cpu-full profile: the cpu grid plus Rotten Tomatoes, Pang & Lee, Bible translation, the Transformer on
# selective copying, the conv + attention hybrid on PTB and three hybrids in the length sweep, over FULL_SEEDS.
# Run it in its own clone: it rewrites params.yaml, dvc.yaml and dvc.lock. Its report is copied to docs/cpu-full/
# with the commit it ran from; `python -m pipeline publish docs/cpu-full` adds the outcomes `rescore` checks.
# The report of this clone's run to docs/<folder>/ with what its numbers came from (`rescore` checks them) and
# the commit it ran from; the folder's hand-written README.md is kept.
define publish_report
	mkdir -p docs/$(1) && find docs/$(1) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	cp -r reports/. docs/$(1)/
	$(PY) -m pipeline publish docs/$(1)
	git rev-parse HEAD > docs/$(1)/COMMIT
endef

FULL_SEEDS ?= 0,1,2
repro-full: install
	$(PY) -m pipeline grid profile=cpu-full seeds=$(FULL_SEEDS) models=lstm,transformer,kim-cnn tasks=rt --add
	$(PY) -m pipeline grid models=kim-cnn,transformer tasks=pl-reviews --add
	$(PY) -m pipeline grid models=transformer-seq2seq tasks=bible-ende --add
	$(PY) -m pipeline grid models=transformer tasks=selcopy --add
	$(PY) -m pipeline grid models=lstm tasks=mqar bench=kim-cnn --add
	$(PY) -m pipeline grid models=conv-transformer tasks=ptb bench=conv-transformer,memory-transformer,ssm-attention --add
	dvc repro
	$(call publish_report,cpu-full)

# Quality at long lengths, under the cpu-full profile's settings, over LONG_SEEDS (one by default: its claims
# are then "suggested"): MQAR as Zoology draws it at 64 and 128 tokens (tested to 512) for attention and three
# fixed-state models, PTB at a 1,024-token context, Wikipedia bytes at a 2,048-byte context, selective
# copying at 256 (tested to 1,024) and Pang & Lee reviews at 1,024 tokens; every model of a task in the length sweep.
# Run it in its own clone; its report is copied to docs/cpu-long/.
LONG_SEEDS ?= 0
repro-long: install
	$(PY) -m pipeline grid profile=cpu-full seeds=$(LONG_SEEDS) models=transformer,lstm,mamba,linear-transformer tasks=mqar-long bench=transformer,lstm,mamba,linear-transformer,s4d
	$(PY) -m pipeline grid models=transformer,lstm,mamba tasks=ptb-long --add
	$(PY) -m pipeline grid models=transformer,mamba,s4d tasks=selcopy-long --add
	$(PY) -m pipeline grid models=transformer,lstm,mamba tasks=wiki-bytes --add
	$(PY) -m pipeline grid models=kim-cnn,transformer,mamba,lstm tasks=pl-reviews-long bench=kim-cnn --add
	dvc repro
	$(call publish_report,cpu-long)

# One stage and what it needs, e.g. make stage S=train@lstm-ptb: its missing or stale inputs first (never
# `dvc repro -s` alone, which deletes the stage's outputs and then fails when an input is missing); FORCE=1
# re-runs the stage even when it is up to date.
stage: install
	$(PY) -m pipeline grid
	dvc repro $(S)
	$(if $(FORCE),dvc repro --force --single-item $(S))

# Experiments side by side (pipeline/exps.py): a row per run, named <task>/<model>, with its test metric from
# reports/metrics.json, under the params that differ; a column per experiment (workspace, baseline, each
# `dvc exp run`), wrapped into blocks to fit 120 columns. RUN keeps the runs whose <task>/<model> match it:
# make exps RUN=ptb/lstm, RUN='ptb/.*'.
RUN ?=
exps: install
	$(PY) -m pipeline exps $(if $(RUN),--run '$(RUN)')

# Upload this experiment's offline W&B runs (not every stale run in wandb/); needs `wandb login`
sync: install
	$(PY) -m pipeline sync

# pytest-xdist workers, each running one test file at a time (pyproject: --dist loadfile; conftest hands out the
# longest files first). TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 2
test: install
	WANDB_MODE=$${WANDB_MODE:-offline} $(PY) -m pytest -q -n $(TEST_WORKERS) --durations=20

bench: install
	$(PY) -m bench.recurrence_vs_parallel
	$(PY) -m bench.train_throughput
	$(PY) -m bench.mamba_speed

clean:
	rm -rf runs reports data/raw data/tokenized data/downloads wandb
