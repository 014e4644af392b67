# kite — the user's entry points. See README.md.
#   make          build everything into build/ (programs in build/bin/)
#   make test     install what is missing, build, run the test suite, then again under ASan+UBSan
#   make run      start the demo server (kite demo) on port 8080
#   make fuzz     run every libFuzzer target for FUZZ_SECONDS each (needs clang)
#   make bench    run the benchmarks
BUILD      ?= build
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
BUILD_TYPE ?= RelWithDebInfo
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=

.PHONY: all deps build test test-release test-asan run fuzz bench install clean

all: build

deps:
	@scripts/install-deps.sh build

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DKITE_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test:
	@scripts/install-deps.sh test
	@$(MAKE) --no-print-directory test-release
	@$(MAKE) --no-print-directory test-asan

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

test-asan:
	@cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DKITE_WERROR=ON \
	    -DKITE_SANITIZE=address,undefined -DKITE_BUILD_BENCH=OFF $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD)/asan -j $(JOBS)
	cd $(BUILD)/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j $(JOBS) --timeout 900

run: build
	$(BUILD)/bin/kite demo $(ARGS)

fuzz:
	@scripts/install-deps.sh fuzz
	@cmake -S . -B $(BUILD)/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DKITE_BUILD_FUZZERS=ON -DKITE_BUILD_TESTS=OFF -DKITE_BUILD_BENCH=OFF \
	    -DKITE_BUILD_PROGRAMS=OFF -DKITE_SANITIZE=address,undefined >/dev/null
	@cmake --build $(BUILD)/fuzz -j $(JOBS)
	@scripts/run-fuzzers.sh $(BUILD)/fuzz/bin $(FUZZ_SECONDS)

bench:
	@scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory build
	@bench/run.sh $(BUILD) $(ARGS)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD)
