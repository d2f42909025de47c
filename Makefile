# Thin wrapper over Meson; `make run` and `make test` are the README's two commands.
BUILD ?= build
SAN_BUILD ?= build-sanitize
TSAN_BUILD ?= build-tsan
PORT ?= 8000

DEB_OUT ?= $(BUILD)/deb
PREFIX ?= /usr/local

.PHONY: all bootstrap build run run-cluster test test-unit test-sanitize test-tsan fuzz format clean \
	deb install

all: build

bootstrap:
	@bash scripts/bootstrap

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: bootstrap $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	@bash scripts/run-demo $(BUILD) $(PORT)

# A cluster on loopback: redis-server, 3 gateways (PORT..PORT+2), 2 workers,
# then a job created on one gateway and watched on another.
run-cluster: build
	@bash scripts/run-cluster $(BUILD) $(PORT)

test: build
	meson test -C $(BUILD) --print-errorlogs

# Debian packages (debian/, docs/operations.md) with dpkg-buildpackage from
# a copy of the tree: the .debs land in $(DEB_OUT), lintian checks them.
deb: bootstrap
	bash scripts/build-deb $(DEB_OUT)

# meson install of a build configured for PREFIX (DESTDIR=... for a staged
# install); run as root for a system prefix.
$(BUILD)-install/build.ninja:
	meson setup $(BUILD)-install --prefix $(PREFIX) -Dtests=false

install: bootstrap $(BUILD)-install/build.ninja
	meson configure $(BUILD)-install --prefix $(PREFIX)
	ninja -C $(BUILD)-install
	meson install -C $(BUILD)-install $(if $(DESTDIR),--destdir $(DESTDIR))

# Benchmarks (bench/, docs/performance.md): not part of `make test`.
bench: build
	bash scripts/bootstrap --bench && bash bench/run.sh

$(SAN_BUILD)/build.ninja:
	meson setup $(SAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false

test-sanitize: bootstrap $(SAN_BUILD)/build.ninja
	ninja -C $(SAN_BUILD)
	# A small quarantine: ASan's default (256 MiB) would read as a leak in
	# the tests that bound server memory behind a stalled reader.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=16 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(SAN_BUILD) --print-errorlogs

$(TSAN_BUILD)/build.ninja:
	meson setup $(TSAN_BUILD) -Db_sanitize=thread -Db_lundef=false

# The suite under ThreadSanitizer: unit tests (through tests/support/crtsan,
# as Criterion cannot start under TSan) and the integration tests against a
# TSan server and CLI. Any report fails its test: halt_on_error ends the
# process with status 66. Not the viewer (suite gtk): GLib's locks are
# invisible to TSan. Slower code gets 3x meson's timeouts and 5x the unit
# tests' own; shadow memory gets 5x the RSS bounds, and rates the tests
# expect of the server a third.
test-tsan: bootstrap $(TSAN_BUILD)/build.ninja
	ninja -C $(TSAN_BUILD)
	TSAN_OPTIONS=halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp \
	CRTSAN_TIMEOUT_SCALE=5 CRYOMAMBA_TEST_RSS_SCALE=5 CRYOMAMBA_TEST_SPEED_SCALE=3 \
	  meson test -C $(TSAN_BUILD) --print-errorlogs --no-suite gtk \
	    --timeout-multiplier 3

FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30

# Builds the libFuzzer targets with clang + ASan/UBSan and runs each for
# FUZZ_SECONDS, starting from its seeds in fuzz/corpus/<target> if any (new
# inputs go to $(FUZZ_BUILD)/corpus/<target>); findings are written to
# $(FUZZ_BUILD)/findings.
fuzz:
	@bash scripts/bootstrap --fuzz
	[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) \
	  -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(FUZZ_BUILD)
	mkdir -p $(FUZZ_BUILD)/findings
	for t in $(FUZZ_BUILD)/fuzz/fuzz_*; do \
	  [ -f "$$t" ] && [ -x "$$t" ] || continue; \
	  echo "== $$t"; \
	  name=$$(basename "$$t"); corpus=""; \
	  if [ -d fuzz/corpus/$$name ]; then \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$name; \
	    corpus="$(FUZZ_BUILD)/corpus/$$name fuzz/corpus/$$name"; \
	  fi; \
	  "$$t" -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -artifact_prefix=$(FUZZ_BUILD)/findings/ $$corpus || exit 1; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(TSAN_BUILD) $(BUILD)-install
