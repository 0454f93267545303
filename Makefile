# romp: build, run, test, bench. `make help` lists the targets.
CARGO ?= cargo
VENV := .venv
CLIENTS := tests/clients

.PHONY: help run build release static static-test test unit client-tests client-deps chromium bench bench-micro soak fuzz lint fmt clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: ## Run the broker on its built-in defaults (STOMP on 127.0.0.1:61613)
	$(CARGO) run --release --bin romp

build: ## Debug build
	$(CARGO) build --all-targets

release: ## Optimised build: target/release/romp
	$(CARGO) build --release

# A statically linked binary without the musl target: glibc linked statically (crt-static) on
# the gnu target. Trade-offs (docs/deploy.md): name lookups through NSS do not work (romp binds
# and dials IP addresses only, so it does not need them) and the binary is glibc-version bound
# only to the kernel ABI.
HOST := $(shell rustc -vV | sed -n 's/^host: //p')
static: ## Statically linked, stripped binary: target/static/romp (runs FROM scratch)
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --target $(HOST) --bin romp
	mkdir -p target/static
	cp target/$(HOST)/release/romp target/static/romp
	strip target/static/romp

static-test: static ## Check the static binary with file/ldd and run it in an empty chroot
	tests/static/run.sh target/static/romp

test: unit client-tests static-test ## The whole test suite: unit, integration, third-party clients, static binary

unit: ## Rust unit and integration tests
	$(CARGO) test

client-deps: $(VENV)/.ok $(CLIENTS)/node_modules/.ok chromium ## Install stomp.py, @stomp/stompjs and Chromium

$(VENV)/.ok: $(CLIENTS)/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(CLIENTS)/requirements.txt
	touch $@

$(CLIENTS)/node_modules/.ok: $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	cd $(CLIENTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser test needs Debian's chromium (root installs it; others get a clear message).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update && apt-get install -y --no-install-recommends chromium); } \
	  || { echo "install Debian's chromium (apt-get install chromium) for the browser test"; exit 1; }

client-tests: client-deps ## stomp.py and stompjs against a real broker process
	$(CARGO) build --bin romp
	$(CLIENTS)/run.sh target/debug/romp

bench: ## Quick matrix against romp, RabbitMQ and the old romp (installs peers); writes bench/REPORT.md
	IDLE_SESSIONS=3000 scripts/compare.sh 2 2

bench-micro: ## Criterion benches: hot paths (parser, encoder, fan-out) and CPU per unit of hostile input
	$(CARGO) bench --bench stomp --bench cpu --bench journal -- --warm-up-time 1 --measurement-time 3

soak: ## Mixed load for SOAK_SECONDS (default 300), sampling RSS and fds into soak-out/
	scripts/soak.sh $(or $(SOAK_SECONDS),300) soak-out

fuzz: ## Each cargo-fuzz target for FUZZ_SECONDS (default 60); needs cargo install cargo-fuzz
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV) $(CLIENTS)/node_modules
