# Thin wrapper over Meson; `make run` and `make test` are the README's two commands.
BUILD ?= build
SAN_BUILD ?= build-sanitize
PORT ?= 8000

.PHONY: all bootstrap build run test test-unit test-sanitize format clean

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

$(SAN_BUILD)/build.ninja:
	meson setup $(SAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false

test-sanitize: bootstrap $(SAN_BUILD)/build.ninja
	ninja -C $(SAN_BUILD)
	# A small quarantine: ASan's default (256 MiB) would read as a leak in
	# the tests that bound server memory behind a stalled reader.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=16 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(SAN_BUILD) --print-errorlogs

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
