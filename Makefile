# Ferry: the usual steps. `make demo` and `make test` each install what is
# missing (Debian packages), configure and build first.

PACKAGES := build-essential cmake pkg-config libzmq3-dev liblua5.4-dev libprotobuf-c-dev \
            protobuf-c-compiler libcmocka-dev uthash-dev libcurl4-openssl-dev \
            python3 python3-zmq python3-protobuf python3-pytest python3-venv \
            python3-pip protobuf-compiler clang libclang-rt-dev \
            lua5.4 libmicrohttpd-dev prometheus
BUILD    ?= build
ASAN     ?= build-asan
FUZZ     ?= build-fuzz
FUZZ_SECONDS ?= 30
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build demo deb test test-release test-asan test-fuzz test-docker bench clean format

all: build

deps:
	@scripts/install-deps.sh $(PACKAGES)

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	scripts/demo.sh $(BUILD)/bin

# The Debian package (CPack, cmake/install.cmake): $(BUILD)/ferry_<version>_<arch>.deb with
# the binaries, libferry, the headers, ferry.pc and the man pages.
deb: build
	cd $(BUILD) && cpack -G DEB

test: test-release test-asan test-fuzz test-docker

test-release: build
	ctest --test-dir $(BUILD) --output-on-failure

# The same tests with AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON
	cmake --build $(ASAN) -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN) --output-on-failure

# libFuzzer on the envelope and value decoders, for a bounded time.
test-fuzz: deps
	cmake -S fuzz -B $(FUZZ) -DCMAKE_C_COMPILER=clang -DFUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build $(FUZZ) -j$(JOBS) --target fuzz-run

# The Docker image and Compose stack, for real: installs docker.io and docker-compose,
# starts dockerd if none runs (and stops it again), builds, scales, tears down.
test-docker: build
	docker/test.sh $(BUILD)/bin

# The benchmark of docs/benchmarks.md: Ferry against the raw ZeroMQ path.
bench: build
	$(BUILD)/bin/ferry-bench $(BENCH_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
