# Thin wrapper over Meson; `make run` and `make test` are the README's two commands.
BUILD ?= build
SAN_BUILD ?= build-sanitize
PORT ?= 8000

.PHONY: all bootstrap build run test test-unit test-sanitize fuzz format clean

all: build

bootstrap:
	@bash scripts/bootstrap

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: bootstrap $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	@bash scripts/run-demo $(BUILD) $(PORT)

test: build
	meson test -C $(BUILD) --print-errorlogs

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

FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 30

# Builds the libFuzzer targets with clang + ASan/UBSan and runs each for
# FUZZ_SECONDS; findings are written to $(FUZZ_BUILD)/findings.
fuzz:
	@bash scripts/bootstrap --fuzz
	[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) \
	  -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(FUZZ_BUILD)
	mkdir -p $(FUZZ_BUILD)/findings
	for t in $(FUZZ_BUILD)/fuzz/fuzz_*; do \
	  [ -f "$$t" ] && [ -x "$$t" ] || continue; \
	  echo "== $$t"; \
	  "$$t" -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -artifact_prefix=$(FUZZ_BUILD)/findings/ || exit 1; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
