# oauthbroker — the two commands a newcomer needs are `make dev` and `make test`.

SHELL    := bash
.SHELLFLAGS := -o pipefail -c
GO       ?= go
TOOLS    := .tools
DYNALITE := $(TOOLS)/node_modules/.bin/dynalite
FUNCS    := authorize callback refresh token
ARCH     ?= arm64
LAMBDA_FLAGS := -trimpath -tags lambda.norpc -ldflags "-s -w"

PY       := $(TOOLS)/py
PY_PINS  := internal/testsupport/pytools/requirements.txt
PY_CHECK := internal/testsupport/pytools/pins.py $(PY_PINS)

.PHONY: dev test tools pytools build fuzz vet clean bench bench-refresh

## dev: run the whole product locally (embedded store, sandbox provider, no AWS account)
dev:
	$(GO) run ./cmd/dev

## test: every test, with the race detector, against dynalite and the Lambda emulator
test: tools vet
	$(GO) test -race -count=1 -timeout 12m ./...

## tools: what the tests run besides Go: dynalite from npm; moto, cfn-lint and the SAM translator from pip
tools: $(DYNALITE) pytools

$(DYNALITE):
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error dynalite@4.0.0

# The machine's own moto, cfn-lint and SAM translator when they are the
# pinned versions (tests look in $(PY)/bin first, then in PATH); otherwise
# a venv in $(PY) with the pins, kept up to date once it exists.
pytools:
	@command -v python3 >/dev/null || { echo "python3 is needed (Debian: apt-get install python3 python3-venv python3-pip)"; exit 1; }
	@if [ ! -x $(PY)/bin/python3 ] && python3 $(PY_CHECK) 2>/dev/null && command -v cfn-lint >/dev/null && command -v moto_server >/dev/null; then \
		echo "moto, cfn-lint, SAM translator: the machine's, at the pinned versions"; \
	else \
		fresh=; [ -x $(PY)/bin/python3 ] || { python3 -m venv $(PY) && fresh=1; } || exit 1; \
		$(PY)/bin/python3 $(PY_CHECK) 2>/dev/null || $(PY)/bin/python3 -m pip install --quiet --disable-pip-version-check -r $(PY_PINS) || \
			{ [ -z "$$fresh" ] || rm -rf $(PY); exit 1; }; \
		$(PY)/bin/python3 $(PY_CHECK) && echo "moto, cfn-lint, SAM translator: pinned in $(PY)"; \
	fi

vet:
	$(GO) vet ./...

## build: Lambda bootstraps for deployment (ARCH=arm64 by default), as `sam build` makes them
build:
	@for f in $(FUNCS); do \
		echo "build/$$f/bootstrap"; \
		GOOS=linux GOARCH=$(ARCH) CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o build/$$f/bootstrap ./functions/$$f || exit 1; \
	done

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
