# ClassChat. `make run` starts a local server and the desktop app; `make test` checks everything.
# Both install the Debian/Ubuntu packages they need when they are missing.

SHELL := /bin/bash
CARGO ?= cargo
DATA ?= $(CURDIR)/.classchat-data
LISTEN ?= 127.0.0.1:7420
LISTEN_HOST = $(word 1,$(subst :, ,$(LISTEN)))
LISTEN_PORT = $(word 2,$(subst :, ,$(LISTEN)))

# Build: a C toolchain (bundled SQLite, ring-free crypto needs only cc).
BUILD_PKGS := build-essential pkg-config
# Run time of the desktop app under X11/Wayland with the glow renderer (see PLATFORM notes).
GUI_PKGS := libx11-6 libx11-xcb1 libxcursor1 libxi6 libxrandr2 libxkbcommon-x11-0 libxkbcommon0 \
            libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libwayland-client0 libwayland-cursor0 \
            libwayland-egl1 libdbus-1-3
# Headless screenshots of the app.
SHOT_PKGS := xvfb xauth imagemagick x11-utils xdotool

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# $(call apt_ensure,packages): install whichever of the packages are not installed yet.
define apt_ensure
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing missing packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

.PHONY: all deps gui-deps shot-deps build run server test lint fmt bench classroom fuzz audit icons package package-test screenshots clean

all: build

deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from your distribution (apt-get install cargo) or rustup"; exit 1; }
	$(call apt_ensure,$(BUILD_PKGS))

gui-deps: deps
	$(call apt_ensure,$(GUI_PKGS))

shot-deps: gui-deps
	$(call apt_ensure,$(SHOT_PKGS))

build: deps
	$(CARGO) build --release --workspace

# A local server in ./.classchat-data (SQLite embedded), reachable from this machine only.
server: deps
	$(CARGO) run --release -p classchat-server -- --listen $(LISTEN) --data $(DATA)

# Starts a local server unless one is already listening, then opens the app pointed at it.
# The connect screen lists servers announced on this machine (the local one announces
# itself on loopback). APP_ARGS go to the app, e.g. APP_ARGS="--data-dir /tmp/second".
run: gui-deps
	$(CARGO) build --release -p classchat-server -p classchat
	@if ! (exec 3<>/dev/tcp/$(LISTEN_HOST)/$(LISTEN_PORT)) 2>/dev/null; then \
	  echo "Starting classchat-server on $(LISTEN), data in $(DATA) (log: $(DATA)/server.log)"; \
	  mkdir -p $(DATA); \
	  nohup ./target/release/classchat-server --listen $(LISTEN) --data $(DATA) </dev/null >$(DATA)/server.log 2>&1 & \
	  for i in $$(seq 1 100); do (exec 3<>/dev/tcp/$(LISTEN_HOST)/$(LISTEN_PORT)) 2>/dev/null && break; sleep 0.1; done; \
	fi
	./target/release/classchat --server $(LISTEN) --discovery loopback $(APP_ARGS)

fmt:
	$(CARGO) fmt --all

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The peer-to-peer tests put peers in network namespaces (ip netns; skipped without root).
# The cluster tests start their own throwaway nats-server (Debian's package) on a free
# loopback port; nothing needs to be running beforehand.
# The short class day (gui/tests/classroom.rs) runs target/debug/classchat-server, which
# `cargo test --workspace` builds for the server's own integration tests before any runs.
# On CI (CI set) incremental compilation is off: a clean build never reuses it, and its
# cache is gigabytes of disk.
ifdef CI
test: export CARGO_INCREMENTAL := 0
endif
test: lint
	$(call apt_ensure,iproute2 nats-server postgresql)
	$(CARGO) test --workspace

# The seal micro-benchmark, then a short run of every classchat-bench scenario (about 15
# minutes; InspIRCd is installed for the fan-out comparison) and the table. The long runs
# and their commands are in BENCHMARKS.md.
bench: deps
	$(CARGO) bench -p classchat-wire --bench seal
	$(call apt_ensure,inspircd util-linux iproute2)
	$(CARGO) build --release -p classchat-server
	./target/release/classchat-bench suite

# A whole class day against the real release server, with a report ending in PASS or FAIL
# (README, "A class day in one command"): 200 students, a 200 MiB file, kill -9, two app
# windows under Xvfb (screenshots in screenshots/). CLASSROOM_ARGS go to the tool, e.g.
# CLASSROOM_ARGS="--students 100 --downloaders 20 --no-windows"; `--help` lists them.
CLASSROOM_ARGS ?=
classroom: shot-deps
	$(CARGO) build --release -p classchat-server --bin classchat-server
	$(CARGO) build --release -p classchat --bin classchat --example classroom
	./target/release/examples/classroom $(CLASSROOM_ARGS)

# Fuzz every decoder (wire/fuzz/fuzz_targets/), one target after another, one process
# each, under `nice -n 19`: FUZZ_RUNS executions each (libFuzzer's -runs) or, without it,
# FUZZ_SECONDS each. FUZZ_TARGETS picks targets; FUZZ_SANITIZER=none runs without
# AddressSanitizer (faster). Prints a table of executions, time, corpus and crashes. Needs
# nightly (`rustup toolchain install nightly`); installs cargo-fuzz when missing. Not part
# of `make test`. RELIABILITY.md has the 10-million-run figures: make fuzz FUZZ_RUNS=10000000
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_TARGETS ?=
FUZZ_SANITIZER ?= address
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	./wire/fuzz/run.sh $(if $(FUZZ_RUNS),-n $(FUZZ_RUNS),-t $(FUZZ_SECONDS)) -s $(FUZZ_SANITIZER) $(FUZZ_TARGETS)

# The dependency audit (RELIABILITY.md): licences, duplicate crates and sources, checked by
# cargo-deny against deny.toml; installs cargo-deny when missing. The advisories check needs
# the RustSec database, which cargo-deny fetches with git: where that works, run
# make audit AUDIT_CHECKS="advisories licenses bans sources". Not part of `make test`.
AUDIT_CHECKS ?= licenses bans sources
audit:
	@command -v cargo-deny >/dev/null || $(CARGO) install cargo-deny --locked
	$(CARGO) deny check $(AUDIT_CHECKS)

# The .deb packages of the app and the server, and a self-contained tarball, in dist/.
package: deps
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked
	$(CARGO) build --release -p classchat-server -p classchat
	mkdir -p dist
	$(CARGO) deb --no-build -p classchat-server -o dist/
	$(CARGO) deb --no-build -p classchat -o dist/
	./packaging/tarball.sh dist
	@ls -l dist

# Installs the packages on this machine and checks them (see packaging/test-packages.sh).
package-test: package shot-deps
	./packaging/test-packages.sh dist

# PNGs of the real app under Xvfb against a seeded local server, in screenshots/.
screenshots: shot-deps
	./gui/screenshots.sh
	./gui/markdown_shots.sh

# Rebuild icons/png/*.png and icons/classchat.ico from icons/classchat.svg.
icons:
	$(call apt_ensure,librsvg2-bin imagemagick)
	./icons/build.sh

clean:
	$(CARGO) clean
