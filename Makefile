# Two commands for a newcomer: `make run` (the demo) and `make test` (everything CI runs).
# Both work on a fresh machine with only Python >= 3.11: they create .venv and install.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest check nab bench demo examples clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)                 ## the daemon on the embedded default: the demo, alerts on the console
	$(BIN)/xwatch run

test: lint typecheck pytest   ## everything CI runs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

check: $(STAMP)               ## validate the shipped config, rules and playbooks
	$(BIN)/xwatch check

nab: $(STAMP)                 ## NAB score of the volume detector (needs ../shared/data/nab)
	$(BIN)/python ../shared/tools/nab/nab_run_detector.py --name xwatch \
	    --cmd "$(BIN)/xwatch backtest --format nab" --categories realTweets --out build/nab

bench: $(STAMP)               ## one table of every benchmark (bench/table.py --full: the hour-long run)
	$(BIN)/python bench/table.py

demo: $(STAMP)                ## rebuild the bundled demo stream from its generator (fixed seed)
	$(BIN)/python -m xwatch.demo.generate --out xwatch/demo/demo.jsonl.gz

examples: $(STAMP)            ## the README's rendered Slack message, email, incident page, chart
	$(BIN)/python docs/examples/generate.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
