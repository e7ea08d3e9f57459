# irctl — see `make help`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X irctl.dev/irctl/internal/cli.version=$(VERSION)
KUBE_VERSION := v1.36.3
KAS_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36
DRILL_DIR := $(CURDIR)/.sandbox/drill
# the scenario `make drill` runs (testdata/scenarios/NAME.yaml)
SCENARIO ?= leaked-api-keys
export IRCTL_SANDBOX_BINS := $(BIN)

.PHONY: help build test unit fuzz drill bench lint sandbox-bins clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/irctl
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/irctl ./cmd/irctl

SANDBOX_BINS := $(BIN)/kube-apiserver $(BIN)/etcd $(BIN)/kube-controller-manager $(BIN)/kube-scheduler $(BIN)/kwok $(BIN)/mailpit $(BIN)/prometheus

sandbox-bins: $(SANDBOX_BINS) ## build the sandbox's servers from the Go module proxy (once; ~15 min the first time)

$(BIN)/etcd:
	@echo "building etcd v3.6 into $(BIN) (about 2 minutes the first time)..."
	cd tools/sandbox-bins && $(GO) build -o $(BIN)/etcd ./etcd
	@echo "etcd built"

$(BIN)/kube-apiserver:
	@echo "building kube-apiserver $(KUBE_VERSION) into $(BIN) (about 10 minutes the first time; cached afterwards)..."
	cd tools/sandbox-bins && $(GO) build -ldflags "$(KAS_LDFLAGS)" -o $(BIN)/kube-apiserver ./kube-apiserver
	@echo "kube-apiserver built"

# The controller manager and scheduler share most packages with
# kube-apiserver (same module, same versions), so they build after it, from
# the warm cache, rather than compiling the same packages concurrently.
$(BIN)/kube-controller-manager: | $(BIN)/kube-apiserver
	@echo "building kube-controller-manager $(KUBE_VERSION) into $(BIN) (a few minutes after kube-apiserver)..."
	cd tools/sandbox-bins && $(GO) build -ldflags "$(KAS_LDFLAGS)" -o $(BIN)/kube-controller-manager ./kube-controller-manager
	@echo "kube-controller-manager built"

$(BIN)/kube-scheduler: | $(BIN)/kube-controller-manager
	@echo "building kube-scheduler $(KUBE_VERSION) into $(BIN) (about a minute after the controller manager)..."
	cd tools/sandbox-bins && $(GO) build -ldflags "$(KAS_LDFLAGS)" -o $(BIN)/kube-scheduler ./kube-scheduler
	@echo "kube-scheduler built"

# kwok, the simulated kubelets, is a module of its own (tools/kwok): its
# requirements would move versions that the kube-apiserver build shares.
$(BIN)/kwok:
	@echo "building kwok v0.8.0 into $(BIN) (about 2 minutes the first time)..."
	cd tools/kwok && $(GO) build -o $(BIN)/kwok sigs.k8s.io/kwok/cmd/kwok
	@echo "kwok built"

# Mailpit, the sandbox's SMTP server whose API tests read, is a module of
# its own too (tools/mailpit), for the same reason.
$(BIN)/mailpit:
	@echo "building mailpit v1.33.1 into $(BIN) (about 6 minutes the first time)..."
	cd tools/mailpit && $(GO) build -ldflags "-X github.com/axllent/mailpit/config.Version=v1.33.1" -o $(BIN)/mailpit github.com/axllent/mailpit
	@echo "mailpit built"

# Prometheus, which the sandbox runs for the cluster compromise runbook's
# monitoring steps, is a module of its own too (tools/prometheus). The
# remove_all_sd tag leaves out every service discovery plugin but file and
# HTTP (the sandbox's Prometheus scrapes a static target), which the build
# would spend most of its time on.
PROM_VERSION := 3.16.0
$(BIN)/prometheus:
	@echo "building prometheus v$(PROM_VERSION) into $(BIN) (about 3 minutes the first time)..."
	cd tools/prometheus && $(GO) build -tags remove_all_sd -ldflags "-X github.com/prometheus/common/version.Version=$(PROM_VERSION)" -o $(BIN)/prometheus github.com/prometheus/prometheus/cmd/prometheus
	@echo "prometheus built"

unit: ## unit tests only (no servers)
	$(GO) test -short ./...

test: sandbox-bins ## unit and integration tests against real etcd, kube-apiserver and PostgreSQL, then a bounded fuzz run
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) fuzz

# Every input that reaches SQL (internal/action/sqlaction/fuzz_test.go).
FUZZ_TARGETS := FuzzSuspiciousIPs FuzzSetStrings FuzzSetInts FuzzSetString FuzzExecAndQueryArgs FuzzExportFilters
FUZZTIME ?= 15s

fuzz: sandbox-bins ## fuzz every input that reaches SQL against the sandbox's PostgreSQL with a canary table (FUZZTIME per target)
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; for t in $(FUZZ_TARGETS); do \
		echo "== $$t ($(FUZZTIME))"; \
		if $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./internal/action/sqlaction >$$log 2>&1; then \
			grep -E '^(fuzz: elapsed: [0-9]+s, execs|ok)' $$log | tail -2; \
		else \
			grep -v '^fuzz: elapsed' $$log; exit 1; \
		fi; \
	done

drill: build sandbox-bins ## irctl drill: a sandbox, an attacker using the stolen credentials, the runbook's phases with --yes, the score card (SCENARIO=leaked-api-keys)
	@mkdir -p $(DRILL_DIR)
	IRCTL_STATE_DIR=$(DRILL_DIR)/incidents $(BIN)/irctl drill --scenario $(SCENARIO) --junit $(DRILL_DIR)/junit.xml --report $(DRILL_DIR)/report.md

bench: build sandbox-bins ## benchmarks side by side with kubectl/psql on the sandbox
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m ./internal/bench/...

lint: ## go vet and staticcheck
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

clean: ## remove built binaries (keeps the Go build cache)
	rm -rf $(BIN)/irctl .sandbox
