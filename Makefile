# faregate: `make run` (demo gateway on http://127.0.0.1:4000) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEMO_KEY ?= sk-faregate-demo
# `make run PORT=4100 HOST=0.0.0.0`: only values given on the command line count (`:=` ignores an
# inherited $PORT or $HOST, which shells and platforms set for their own purposes).
HOST := 127.0.0.1
PORT := 4000
# `make bench ARGS=--quick` (make would take `make bench --quick` as an option of its own).
ARGS :=
APT_PACKAGES := nginx wrk redis-server postgresql chromium systemd gcc libc6-dev

.PHONY: install install-runtime run test lint bench bench-compare dist system-deps clean

# `make install`: faregate editable with the dev tools (tests, lint, bench); `make install-runtime`
# (what `make run` needs): faregate and its runtime dependencies only.
install: $(STAMP)
install-runtime: $(RUNTIME_STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP) $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e .
	@touch $(RUNTIME_STAMP)

# Debian packages the tests and the benchmark start themselves (on loopback, free ports).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: install-runtime
	@echo ""
	@echo "  faregate demo on http://$(HOST):$(PORT)  (mock provider, no upstream keys needed; another port: make run PORT=N)"
	@echo "  demo key: $(DEMO_KEY)"
	@echo "  try:  curl -s http://$(HOST):$(PORT)/v1/chat/completions -H 'Authorization: Bearer $(DEMO_KEY)' -H 'Content-Type: application/json' -d '{\"model\":\"demo-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]}'"
	@echo "  Anthropic Messages:  curl -s http://$(HOST):$(PORT)/v1/messages -H 'x-api-key: $(DEMO_KEY)' -H 'Content-Type: application/json' -d '{\"model\":\"demo-chat\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]}'"
	@echo "  OpenAI Responses:  curl -s http://$(HOST):$(PORT)/v1/responses -H 'Authorization: Bearer $(DEMO_KEY)' -H 'Content-Type: application/json' -d '{\"model\":\"demo-chat\",\"input\":\"Hello!\"}'"
	@echo ""
	FAREGATE_MASTER_KEY=$${FAREGATE_MASTER_KEY:-$(DEMO_KEY)} $(VENV)/bin/faregate serve -c examples/demo.yaml --host '$(HOST)' --port '$(PORT)'

test: install system-deps
	$(PY) -m pytest -n 3  # three test processes on two cores: most tests wait on real servers and subprocesses

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests/test_module_size.py

bench: install system-deps
	$(PY) -m bench $(ARGS)

bench-compare: install system-deps
	$(PY) -m bench --compare $(ARGS)

# the wheel (dist/faregate-VERSION-py3-none-any.whl): `pip install` it into any virtualenv
dist: install
	$(PY) -m build --wheel --outdir dist

clean:
	rm -rf $(VENV) .faregate .pytest_cache .mypy_cache .ruff_cache dist build
