# RecoveryService build. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Pinned tools, installed with `go install` into .bin/ (never onto the
# system), so every machine builds with the same versions.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
PROTOVALIDATE_VERSION      := v1.2.2
GRPCURL_VERSION            := v1.9.4
GHZ_VERSION                := v0.120.0
# golang.org/x/perf has no release tags: a pinned pseudo-version.
BENCHSTAT_VERSION          := v0.0.0-20260908200009-22c9c6c9d4da
GOLANGCI_LINT_VERSION      := v2.15.0
GOVULNCHECK_VERSION        := v1.9.0
# kustomize renders deploy/kubernetes in its test; v5.8.3 needs Go 1.27.
KUSTOMIZE_VERSION          := v5.8.2

BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)

GO_PACKAGES := ./...
# The git revision `make breaking` compares the contract with.
BREAKING_AGAINST ?= main
# -race: the flows are concurrent (reservations, pipes, health watchers),
# and a data race is a bug whether or not a test happens to lose it.
TEST_FLAGS  ?= -race -count=1 -timeout=20m

define go_tool
$(BIN)/.$(1)-$(3):
	@mkdir -p $(BIN)
	@echo ">> installing $(2)@$(3)"
	@GOBIN=$(BIN) go install $(2)@$(3)
	@touch $$@
TOOL_STAMPS += $(BIN)/.$(1)-$(3)
endef
$(eval $(call go_tool,buf,github.com/bufbuild/buf/cmd/buf,$(BUF_VERSION)))
$(eval $(call go_tool,protoc-gen-go,google.golang.org/protobuf/cmd/protoc-gen-go,$(PROTOC_GEN_GO_VERSION)))
$(eval $(call go_tool,protoc-gen-go-grpc,google.golang.org/grpc/cmd/protoc-gen-go-grpc,$(PROTOC_GEN_GO_GRPC_VERSION)))
$(eval $(call go_tool,grpcurl,github.com/fullstorydev/grpcurl/cmd/grpcurl,$(GRPCURL_VERSION)))
$(eval $(call go_tool,ghz,github.com/bojand/ghz/cmd/ghz,$(GHZ_VERSION)))
$(eval $(call go_tool,benchstat,golang.org/x/perf/cmd/benchstat,$(BENCHSTAT_VERSION)))
$(eval $(call go_tool,golangci-lint,github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION)))
$(eval $(call go_tool,govulncheck,golang.org/x/vuln/cmd/govulncheck,$(GOVULNCHECK_VERSION)))
$(eval $(call go_tool,kustomize,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION)))
# What generate, lint and test need: everything but the bench and vuln tools,
# so a first `make test` on a new machine builds no tool it does not run.
BUILD_TOOL_STAMPS := $(filter-out $(BIN)/.benchstat-% $(BIN)/.govulncheck-%,$(TOOL_STAMPS))

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: tools
tools: $(TOOL_STAMPS) ## install the pinned tools into .bin/

# Debian packages the tests run for real: openssl (crypto interop vectors),
# the PostgreSQL server (registry tests start their own instance), and jq and
# curl (the README's examples are executed by a test), podman with runc and
# the CA bundle (deploy/image's test builds and runs the image).
.PHONY: system-deps
system-deps: ## install the Debian packages the tests need (apt-get, when missing)
	@missing=""; \
	  command -v openssl >/dev/null || missing="$$missing openssl"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  command -v jq >/dev/null || missing="$$missing jq"; \
	  command -v curl >/dev/null || missing="$$missing curl"; \
	  command -v xxd >/dev/null || missing="$$missing xxd"; \
	  command -v podman >/dev/null || missing="$$missing podman"; \
	  command -v runc >/dev/null || missing="$$missing runc"; \
	  [ -s /etc/ssl/certs/ca-certificates.crt ] || missing="$$missing ca-certificates"; \
	  if [ -n "$$missing" ]; then \
	    echo ">> installing Debian packages:$$missing"; \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	    $$sudo apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	  fi

PROTOVALIDATE_PROTO := third_party/protovalidate/buf/validate/validate.proto
$(PROTOVALIDATE_PROTO):
	@mkdir -p $(dir $@)
	@dir=$$(go mod download -json github.com/bufbuild/protovalidate@$(PROTOVALIDATE_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
	  install -m 0644 "$$dir/proto/protovalidate/buf/validate/validate.proto" $@

.PHONY: generate
generate: $(BUILD_TOOL_STAMPS) $(PROTOVALIDATE_PROTO) ## regenerate gen/ from proto/ (buf lint first)
	buf lint
	buf generate

.PHONY: check-generate
check-generate: generate ## fail if gen/ differs from what proto/ generates
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
	  git status --porcelain -- gen; git --no-pager diff --stat -- gen; \
	  echo "gen/ is stale: run 'make generate' and commit the result"; exit 1; fi

# golangci-lint reads .golangci.yml (errorlint, gosec and a few more, each
# justified there, plus the goimports grouping). --allow-serial-runners: two
# `make lint` in one tree wait for each other instead of one failing.
.PHONY: breaking
breaking: $(BUILD_TOOL_STAMPS) $(PROTOVALIDATE_PROTO) ## buf breaking: the contract against main (BREAKING_AGAINST=rev to change)
	@# NOTE: the revision's tree lacks the ignored third_party/, so it is
	@# built with ours before comparing.
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  rev=$$(git rev-parse -q --verify '$(BREAKING_AGAINST)^{commit}' || git rev-parse -q --verify 'origin/$(BREAKING_AGAINST)^{commit}' || git rev-parse HEAD); \
	  git archive "$$rev" | tar -x -C "$$tmp"; \
	  mkdir -p "$$tmp/third_party" && cp -r third_party/protovalidate "$$tmp/third_party/"; \
	  (cd "$$tmp" && buf build proto -o image.binpb); \
	  buf breaking proto --against "$$tmp/image.binpb" && echo "proto/: no breaking change against $(BREAKING_AGAINST)"

.PHONY: lint
lint: $(BUILD_TOOL_STAMPS) $(PROTOVALIDATE_PROTO) ## buf lint, gofmt, go vet and golangci-lint
	buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(GO_PACKAGES)
	golangci-lint run --allow-serial-runners $(GO_PACKAGES)

# The Go vulnerability database govulncheck reads; a mirror or a local copy
# (GOVULNDB=file:///path/to/vulndb) can stand in for it.
GOVULNDB ?= https://vuln.go.dev

# NOTE: `make vuln` is not part of `make test`: it needs the database, which
# a machine without internet access cannot reach. It fails, never passes,
# when it cannot read the database.
.PHONY: vuln
vuln: $(BIN)/.govulncheck-$(GOVULNCHECK_VERSION) ## govulncheck: known vulnerabilities in the code paths we call (needs the Go vulnerability database)
	@command -v curl >/dev/null || { echo "make vuln: curl is needed to check that the database is reachable (make system-deps installs it)" >&2; exit 2; }
	@if ! curl -fsS --max-time 20 -o /dev/null "$(GOVULNDB)/index/db.json"; then \
	  { echo "make vuln: FAILED: the Go vulnerability database at $(GOVULNDB) cannot be read from this machine,"; \
	    echo "  so nothing was checked. Run it where $(GOVULNDB) is reachable, or set GOVULNDB to a mirror"; \
	    echo "  or a local copy (GOVULNDB=file:///path/to/vulndb)."; } >&2; \
	  exit 2; \
	fi
	govulncheck -db "$(GOVULNDB)" $(GO_PACKAGES)

.PHONY: build
build: ## build recoveryd and sandboxd into .bin/
	go build -o $(BIN)/recoveryd ./cmd/recoveryd
	go build -o $(BIN)/sandboxd ./cmd/sandboxd

# IMAGE names what `make image` builds.
IMAGE ?= localhost/recoveryd:latest

.PHONY: image
image: system-deps ## build recoveryd's OCI image offline with podman, FROM scratch (IMAGE=name:tag to change)
	deploy/image/build.sh $(IMAGE)

.PHONY: test
test: $(BUILD_TOOL_STAMPS) system-deps check-generate breaking lint ## everything CI runs: generate check, breaking check, lint, all tests, the interop clients
	go test $(TEST_FLAGS) $(GO_PACKAGES)
	@$(MAKE) --no-print-directory interop

# The polyglot callers in interop/, each run against a real recoveryd in
# front of a real sandboxd built from this tree (interop/run.sh).
INTEROP_CLIENTS ?= node python java
INTEROP_NODE_MODULES := interop/node/node_modules/.package-lock.json

# npm ci, pinned by the committed package-lock.json, with no dependency's
# install scripts run (none is needed); node 20 and npm come
# with the machine (Debian's nodejs is older), so their absence is an error.
$(INTEROP_NODE_MODULES): interop/node/package.json interop/node/package-lock.json
	@command -v npm >/dev/null || { echo "make interop: node 20 and npm are needed for the Node client" >&2; exit 1; }
	cd interop/node && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

# Debian packages of the Python client (grpcio, protobuf and cryptography
# for /usr/bin/python3) and of the Java client (grpc-java and what it needs
# at run time but does not declare: netty, guava, perfmark, gson; the JSR-250
# annotations its stubs use), and protoc with both gRPC plugins, which
# generate the stubs at test time (matching the runtimes' protobuf).
.PHONY: interop-deps
interop-deps: system-deps ## install the Debian packages the interop clients need (apt-get, when missing)
	@missing=""; \
	  for pkg in python3-grpcio python3-protobuf python3-cryptography protobuf-compiler protobuf-compiler-grpc \
	             libgrpc-java libprotobuf-java protobuf-compiler-grpc-java-plugin libnetty-java libguava-java \
	             libperfmark-java libgoogle-gson-java libjsr305-java libgeronimo-annotation-1.3-spec-java; do \
	    dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$pkg"; \
	  done; \
	  if [ -n "$$missing" ]; then \
	    echo ">> installing Debian packages:$$missing"; \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	    $$sudo apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	  fi

.PHONY: interop
interop: $(BIN)/.grpcurl-$(GRPCURL_VERSION) $(PROTOVALIDATE_PROTO) interop-deps $(INTEROP_NODE_MODULES) ## run the Node, Python and Java callers against a real recoveryd (INTEROP_CLIENTS=node python java)
	interop/run.sh $(INTEROP_CLIENTS)

.PHONY: bench
bench: $(BIN)/.ghz-$(GHZ_VERSION) $(BIN)/.grpcurl-$(GRPCURL_VERSION) $(BIN)/.benchstat-$(BENCHSTAT_VERSION) ## benchmarks, each figure a ratio of a baseline run beside it (~20-30 min; docs/benchmarks.md)
	bench/run.sh
	bench/pairs.sh

.PHONY: bench-isolation
bench-isolation: $(BIN)/.ghz-$(GHZ_VERSION) $(BIN)/.grpcurl-$(GRPCURL_VERSION) ## one caller's load against another's SecureData latency: A sent straight to sandboxd (the machine's floor), through recoveryd, and with a per-caller cap (~8 min; docs/benchmarks.md)
	bench/isolation.sh

# NOTE: not part of `make test`: a few minutes of load. bench/soak is a Go
# test (it shares the tests' PostgreSQL set-up) that runs only with
# RECOVERY_SOAK=1; its knobs (SOAK_DURATION, SOAK_CONCURRENCY, SOAK_FAULTS,
# SOAK_POSTGRES=0 ...) pass through the environment.
.PHONY: soak
soak: system-deps ## reliability soak: faults, SIGTERM and kill -9 under load, invariants checked (~5 min; docs/reliability.md)
	RECOVERY_SOAK=1 go test -count=1 -timeout=20m -v -run '^TestSoak$$' ./bench/soak

.PHONY: run
run: ## run recoveryd on the embedded sandbox upstream
	go run ./cmd/recoveryd

.PHONY: run-sandbox
run-sandbox: ## run the upstream emulator on 127.0.0.1:8080
	go run ./cmd/sandboxd

.PHONY: clean
clean: ## remove build outputs and tools
	rm -rf $(BIN) third_party
