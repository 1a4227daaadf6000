# oauthbroker — the two commands a newcomer needs are `make dev` and `make test`.

SHELL    := bash
.SHELLFLAGS := -o pipefail -c
GO       ?= go
TOOLS    := .tools
DYNALITE := $(TOOLS)/node_modules/.bin/dynalite
OIDC_PROVIDER := $(TOOLS)/node_modules/oidc-provider/package.json
FUNCS    := authorize callback refresh token
LAMBDA_ARCH ?= arm64
BUILD_DIR ?= build

# How every Lambda bootstrap is built, here only: by `make build`, by
# `sam build` (the build-<LogicalId> targets below) and, for the tests and
# benchmarks, by `make bootstrap` (lambdarie.Build), so that what is tested
# is what is deployed. -buildvcs=false because `sam build` builds a copy of
# the module without .git: a build in a clone must not stamp the commit
# either, or the two differ. Benchmarks of unstripped builds clear
# LAMBDA_LDFLAGS.
LAMBDA_LDFLAGS := -s -w
LAMBDA_FLAGS   := -trimpath -buildvcs=false -tags lambda.norpc -ldflags "$(LAMBDA_LDFLAGS)"
# $(call lambda_build,<packages>,<output file, or directory ending in />)
lambda_build    = GOOS=linux GOARCH=$(LAMBDA_ARCH) CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(2) $(1)

PY       := $(TOOLS)/py
PY_PINS  := internal/testsupport/pytools/requirements.txt
PY_CHECK := internal/testsupport/pytools/pins.py $(PY_PINS)

.PHONY: dev test tools pytools build fuzz vet clean bench bench-refresh

## dev: run the whole product locally (embedded store, sandbox provider, no AWS account)
dev:
	$(GO) run ./cmd/dev

# The repository's Go modules: the root one (the functions and their
# tests) and those nested in it, which `./...` of the root does not reach:
# the client apps import, and logcheck, which the tests of both share.
MODULES  := . shared/client internal/testsupport/logcheck

## test: every test of every module, with the race detector, against dynalite and the Lambda emulator
test: tools vet
	$(GO) test -race -count=1 -timeout 12m ./...
	@for m in $(filter-out .,$(MODULES)); do \
		echo "(cd $$m && $(GO) test -race -count=1 ./...)"; \
		(cd $$m && $(GO) test -race -count=1 ./...) || exit 1; \
	done

## tools: what the tests run besides Go: dynalite and oidc-provider from npm; moto, cfn-lint and the SAM translator from pip
tools: $(DYNALITE) $(OIDC_PROVIDER) pytools

$(DYNALITE):
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error dynalite@4.0.0

# After dynalite: two npm installs into one prefix must not run at once (make -j).
$(OIDC_PROVIDER): | $(DYNALITE)
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error --save-exact oidc-provider@9.13.3

# The machine's own moto, cfn-lint and SAM translator when they are the
# pinned versions (tests look in $(PY)/bin first, then in PATH); otherwise
# a venv in $(PY) with the pins, kept up to date once it exists.
pytools:
	@command -v python3 >/dev/null || { echo "python3 is needed (Debian: apt-get install python3 python3-venv python3-pip)"; exit 1; }
	@if [ ! -x $(PY)/bin/python3 ] && python3 $(PY_CHECK) 2>/dev/null && command -v cfn-lint >/dev/null; then \
		echo "moto, cfn-lint, SAM translator: the machine's, at the pinned versions"; \
	else \
		fresh=; [ -x $(PY)/bin/python3 ] || { python3 -m venv $(PY) && fresh=1; } || exit 1; \
		$(PY)/bin/python3 $(PY_CHECK) 2>/dev/null || $(PY)/bin/python3 -m pip install --quiet --disable-pip-version-check -r $(PY_PINS) || \
			{ [ -z "$$fresh" ] || rm -rf $(PY); exit 1; }; \
		$(PY)/bin/python3 $(PY_CHECK) && echo "moto, cfn-lint, SAM translator: pinned in $(PY)"; \
	fi

vet:
	@for m in $(MODULES); do \
		echo "(cd $$m && $(GO) vet ./...)"; \
		(cd $$m && $(GO) vet ./...) || exit 1; \
	done

## build: Lambda bootstraps for deployment in build/ (LAMBDA_ARCH=arm64 by default), byte for byte as `sam build` makes them
build:
	@for f in $(FUNCS); do \
		echo "$(BUILD_DIR)/$$f/bootstrap"; \
		$(call lambda_build,./functions/$$f,$(BUILD_DIR)/$$f/bootstrap) || exit 1; \
	done

# `sam build` (Metadata: BuildMethod: makefile, CodeUri: .) copies the
# module, less .git and .aws-sam, to a scratch directory and runs
# build-<LogicalId> there with ARTIFACTS_DIR set; each function is built
# on its own. Its cache is keyed on the whole CodeUri, the module.
SAM_FUNCTIONS := AuthorizeFunction CallbackFunction RefreshFunction TokenFunction
build-AuthorizeFunction: PKG = ./functions/authorize
build-CallbackFunction:  PKG = ./functions/callback
build-RefreshFunction:   PKG = ./functions/refresh
build-TokenFunction:     PKG = ./functions/token
.PHONY: $(addprefix build-,$(SAM_FUNCTIONS))
# Always arm64, the template's Architectures, whatever the environment says.
$(addprefix build-,$(SAM_FUNCTIONS)): override LAMBDA_ARCH = arm64
$(addprefix build-,$(SAM_FUNCTIONS)):
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set: sam build sets it to the function's artifact directory))
	$(call lambda_build,$(PKG),$(ARTIFACTS_DIR)/bootstrap)

# bootstrap: PKG (one package, or several) built as the functions are, to
# OUT (a file, or a directory ending in / for several); for the tests and
# benchmarks, which set LAMBDA_ARCH.
.PHONY: bootstrap
bootstrap:
	$(if $(and $(PKG),$(OUT)),,$(error usage: make bootstrap PKG=<packages> OUT=<file or dir/> [LAMBDA_ARCH=<goarch>]))
	@$(call lambda_build,$(PKG),$(OUT))

## fuzz: run each fuzz target for FUZZTIME (default 60s); `make test` replays the corpora in testdata/fuzz
FUZZTIME ?= 60s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

BENCH_OUT := $(CURDIR)/build/bench

## bench: measure cold start, size, memory, handler cost, AWS requests and sweep throughput; writes docs/performance.md
bench: tools
	rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT)
	BENCH_OUT=$(BENCH_OUT) $(GO) test -run '^$$' -bench '^BenchmarkHandler$$' -benchtime 1s -benchmem -timeout 5m ./bench/ | tee $(BENCH_OUT)/bench.txt
	BENCH_OUT=$(BENCH_OUT) $(GO) test -run '^$$' -bench '^Benchmark(ColdStart|BinarySize|Memory|Requests|SweepScaling)$$' -benchtime 1x -timeout 15m ./bench/ | tee -a $(BENCH_OUT)/bench.txt
	$(GO) run ./bench/report -in $(BENCH_OUT) -out docs/performance.md -svg docs/performance-sweep.svg

## bench-refresh: sweep 10 000 due connections against a 50 ms provider (figures: bench/README.md)
bench-refresh: tools
	$(GO) test -run '^$$' -bench BenchmarkRefreshSweep -benchtime 1x -timeout 20m ./bench/

clean:
	rm -rf build .dev
