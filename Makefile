# edgecam developer entry points. `make run` and `make test` install what they need.
SHELL := /bin/bash
# Builds are cached outside the checkout so a fresh clone (CI) reuses them.
CARGO_TARGET_DIR ?= $(HOME)/.cache/edgecam/target
export CARGO_TARGET_DIR
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run test deps test-deps build bench soak lint fmt clean-var deb deb-arm64 smoke systemd-test

deps:
	@bash packaging/install-deps.sh

test-deps:
	@bash packaging/install-deps.sh --test

build: deps
	cargo build --release --locked

## Run the daemon on the test pattern: http://127.0.0.1:8080, data under ./var
run: build
	$(CARGO_TARGET_DIR)/release/edgecam run --config config/dev.toml

## Run the whole test suite
test: test-deps
	@bash packaging/run-tests.sh

## Benchmarks (print tables; see README.md)
bench: deps
	cargo bench --locked --bench capture
	cargo bench --locked --bench recorder
	cargo bench --locked --bench live
	cargo bench --locked --bench mqtt
	cargo bench --locked --bench upload
	cargo bench --locked --bench av_sync
	cargo bench --locked --bench motion
	cargo bench --locked --bench talk
	cargo bench --locked --bench detect
	cargo bench --locked --bench rtsp

## A thousand viewers coming and going: memory, descriptors and tasks before and after
soak: deps
	cargo bench --locked --bench soak

## Debian package (amd64) in $(CARGO_TARGET_DIR)/debian/; needs cargo-deb and lintian
deb: build
	@command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
	@command -v lintian >/dev/null || { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq --no-install-recommends lintian; }
	cargo deb --no-build --strip --locked
	lintian --info $$(ls -t $(CARGO_TARGET_DIR)/debian/edgecam_*_amd64.deb | head -1)

## Debian package for arm64, cross-built (Debian multiarch)
deb-arm64: deps
	@bash packaging/cross-arm64.sh

## Install the amd64 package here, run it 10 s, remove and purge (root)
smoke: deb
	bash packaging/smoke-test.sh $$(ls -t $(CARGO_TARGET_DIR)/debian/edgecam_*_amd64.deb | head -1)

## Boot Debian 12 under systemd (nspawn), install the amd64 package, check the unit (root)
systemd-test: deb
	bash packaging/systemd-boot-test.sh $$(ls -t $(CARGO_TARGET_DIR)/debian/edgecam_*_amd64.deb | head -1)

lint: deps
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings
	cargo test --locked --test it architecture::

fmt:
	cargo fmt --all

clean-var:
	rm -rf var
