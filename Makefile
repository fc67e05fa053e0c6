# The two commands: `make run` and `make test` (see README.md). CMake does the
# building; this file only strings the steps together.
BUILD      ?= build
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

BUILD_CMD   = cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null && \
              cmake --build $(BUILD) -j $(JOBS)

.PHONY: all deps deps-run run test test-normal test-asan test-tsan test-fuzz test-windows install clean

all: deps
	$(BUILD_CMD)

deps:
	@scripts/deps.sh

deps-run:
	@scripts/deps.sh run

# The main job: every I/O model measured on this machine -> report/REPORT.md
run: deps-run
	$(BUILD_CMD)
	$(BUILD)/bench/compare/iomux-compare --quick

test: test-normal test-asan test-tsan test-fuzz test-windows
	@echo "make test: all suites passed (normal, address+undefined, thread, fuzz, windows)"

test-normal: all
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan: deps
	cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DIOMUX_SANITIZE=address,undefined \
	      -DIOMUX_BUILD_BENCH=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --test-dir $(BUILD)-asan --output-on-failure -j $(JOBS)

test-tsan: deps
	cmake -S . -B $(BUILD)-tsan -DCMAKE_BUILD_TYPE=Debug -DIOMUX_SANITIZE=thread \
	      -DIOMUX_BUILD_BENCH=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)-tsan -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    ctest --test-dir $(BUILD)-tsan --output-on-failure -j $(JOBS) -L threads

# The fuzzers (tests/fuzz) under libFuzzer: a clang build with coverage,
# ASan and UBSan, each fuzzer run IOMUX_FUZZ_SECONDS (default 20) seconds
# over a copy of its committed corpus. Longer: IOMUX_FUZZ_SECONDS=3600 make test-fuzz
# (or see tests/fuzz/run.sh to run one fuzzer by hand).
FUZZ_CC ?= clang
test-fuzz: deps
	CC=$(FUZZ_CC) cmake -S . -B $(BUILD)-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIOMUX_FUZZ=ON \
	      -DIOMUX_SANITIZE=address,undefined -DIOMUX_BUILD_BENCH=OFF $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)-fuzz -j $(JOBS) --target iomux-fuzzers
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --test-dir $(BUILD)-fuzz --output-on-failure -j $(JOBS) -L '^fuzz$$'

# The Windows leg: iomux cross-compiled with mingw-w64 (cmake/mingw-w64.cmake)
# and its tests run under Wine (ctest's emulator), in a Wine prefix of its
# own; the end-to-end tests drive the Windows servers with this build's
# Linux iomux-load. Wine timings are not IOCP performance: nothing is timed.
WINE_PREFIX = $(abspath $(BUILD))-win/wine
test-windows: all
	cmake -S . -B $(BUILD)-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64.cmake -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	      -DIOMUX_BUILD_BENCH=OFF -DIOMUX_HOST_LOAD=$(abspath $(BUILD))/apps/load/iomux-load $(CMAKE_ARGS) >/dev/null
	cmake --build $(BUILD)-win -j $(JOBS)
	WINEPREFIX=$(WINE_PREFIX) WINEDEBUG=-all ctest --test-dir $(BUILD)-win --output-on-failure -j $(JOBS)

install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-fuzz $(BUILD)-win
