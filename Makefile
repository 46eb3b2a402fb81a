# Texture Connect: `make run` starts the service on SQLite with the sandbox
# manufacturer; `make test` runs the whole test suite (SQLite and PostgreSQL).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUF := .tools/node_modules/.bin/buf
DATA_DIR ?= var
export TEXTURE_DATABASE_URL ?= sqlite:///$(DATA_DIR)/texture.db
export TEXTURE_DATA_DIR ?= $(DATA_DIR)

.PHONY: install run test generate check-generated lint typecheck buf-lint buf-breaking bench ci clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e clients/python -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(BUF):
	mkdir -p .tools && cd .tools && npm install --silent --no-audit --no-fund @bufbuild/buf@1

run: $(STAMP)
	mkdir -p $(DATA_DIR)
	$(PY) -m texture_connect migrate
	$(PY) -m texture_connect dev-bootstrap
	exec $(PY) -m texture_connect serve --sandbox

test: $(STAMP)
	$(PY) -m pytest -W error $(PYTEST_ARGS)

generate: $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos \
		--python_out=clients/python --pyi_out=clients/python --grpc_python_out=clients/python \
		$$(cd protos && find texture -name '*.proto' | sort)

check-generated: generate
	@git diff --exit-code --stat -- clients/python || \
		(echo "clients/python is stale: run 'make generate' and commit the result" >&2; exit 1)
	@test -z "$$(git status --porcelain --untracked-files=all -- clients/python)" || \
		(echo "clients/python has uncommitted generated files: run 'make generate' and commit" >&2; exit 1)

lint: $(STAMP)
	$(VENV)/bin/ruff check server tests bench
	$(VENV)/bin/ruff format --check server tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

buf-lint: $(BUF)
	$(BUF) lint

# Compares the protos with those main held before this change: the newest commit
# older than a session (4 hours), or BUF_AGAINST when set. Skipped while that
# baseline has no protos yet.
BUF_AGAINST ?= $(shell git rev-list -1 --before='4 hours ago' HEAD 2>/dev/null)
buf-breaking: $(BUF)
	@if [ -n "$(BUF_AGAINST)" ] && git cat-file -e "$(BUF_AGAINST):protos" 2>/dev/null; then \
		echo "buf breaking against $(BUF_AGAINST)"; \
		$(BUF) breaking --against ".git#ref=$(BUF_AGAINST)"; \
	else echo "buf breaking: the baseline has no protos yet, nothing to compare"; fi

bench: $(STAMP)
	PYTHONPATH=tests $(PY) bench/load.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tools $(DATA_DIR)
