# malocal developer workflow. `make help` lists the targets.
GO      ?= go
BIN     ?= bin/malocal
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/malocal/malocal/cli.version=$(VERSION)

.PHONY: help build demo up test unit lint bench

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build the static binary into bin/malocal
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

demo: build ## the main job: install what it needs, then both mnist examples end to end, offline
	bash .ci/install.sh demo
	$(BIN) demo

up: build ## build and start the emulator on the default data dir
	$(BIN) up

lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

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
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench/pytorch
