# The two commands of the README:  `make book` (main job: the book from the committed results)  and  `make test`.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: setup sample test book clean

$(BIN)/unetdyn: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	@touch $@

setup: $(BIN)/unetdyn

sample: setup
	$(BIN)/unetdyn sample --model builtin --schedule full paper-shortcut --seeds 0-9 --out out/sample

test: setup
	$(BIN)/python -m pytest -q

book: setup
	$(BIN)/unetdyn book

clean:
	rm -rf $(VENV) out
