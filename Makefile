# malocal developer workflow. `make help` lists the targets.
GO      ?= go
BIN     ?= bin/malocal
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/malocal/malocal/cli.version=$(VERSION)

.PHONY: help build demo up test unit lint bench

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build the static binary into bin/malocal
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

demo: build ## the main job: install what it needs, then both mnist examples end to end, offline
	bash .ci/install.sh demo
	$(BIN) demo

up: build ## build and start the emulator on the default data dir
	$(BIN) up

STATICCHECK ?= $(HOME)/.cache/malocal/bin/staticcheck

lint: ## go vet, gofmt and staticcheck (installed by .ci/install.sh)
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	@test -x $(STATICCHECK) || { echo "staticcheck is missing: run bash .ci/install.sh (or set STATICCHECK)"; exit 1; }
	$(STATICCHECK) ./...

OCI_CONFORMANCE_BIN ?= $(HOME)/.cache/malocal/oci-conformance
export OCI_CONFORMANCE_BIN

test: ## install what the tests need, lint, then run every test (Docker required)
	bash .ci/install.sh
	$(MAKE) lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 80m ./...

screenshots: build ## the console's browser tests, saving their screenshots to docs/screenshots
	MALOCAL_SCREENSHOTS=1 $(GO) test -count=1 -run 'TestConsole' ./e2e

unit: ## quick tests: no e2e, no Docker
	$(GO) test -race -short $$($(GO) list ./... | grep -v /e2e)

bench: ## run the benchmarks against their peers (see bench/README.md)
	$(GO) run ./bench/fakeobs
	$(GO) run ./bench/registry
	$(GO) test -run '^$$' -bench . -benchtime 3x ./bench/jobs
	$(GO) run ./bench/audit
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 90m ./bench/pytorch
