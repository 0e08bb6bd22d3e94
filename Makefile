# attn — the two commands of the Quick start, and a few more.
#   make run            install missing Debian packages, build, run `attn demo` and `attn score`
#   make test           install missing Debian packages, build, run every test (C and Python)
#   make test-sanitize  the tests again, built with AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz           build the libFuzzer targets (clang) and run each FUZZ_SECONDS (default 60)
#   make install PREFIX=/usr/local
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 60
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
comma := ,
DEBIAN_PACKAGES = build-essential cmake pkg-config libopenblas-openmp-dev libpng-dev zlib1g-dev \
                  python3 python3-numpy python3-pytest python3-torch chromium \
                  libopenmpi-dev openmpi-bin dataset-fashion-mnist
FUZZ_PACKAGES   = clang libclang-rt-14-dev

.PHONY: all deps fuzz-deps build run test test-sanitize fuzz install golden clean

all: build

# Installs what is missing (as root through apt-get; otherwise says what to install).
define install_missing
	@if command -v dpkg >/dev/null 2>&1; then \
	  missing=""; \
	  for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	      echo "installing Debian packages:$$missing"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else \
	      echo "missing Debian packages:$$missing — run: sudo apt-get install$$missing"; exit 1; \
	    fi; \
	  fi; \
	else \
	  echo "not a Debian system: make sure $(2) are installed"; \
	fi
endef

deps:
	$(call install_missing,$(DEBIAN_PACKAGES),a C compiler$(comma) CMake$(comma) pkg-config$(comma) OpenBLAS$(comma) libpng$(comma) zlib$(comma) Open MPI$(comma) Python 3 with NumPy$(comma) pytest and PyTorch$(comma) Chromium for the explorer's browser test$(comma) Fashion-MNIST)

# Only for fuzzing: clang and its libFuzzer/sanitizer runtimes.
fuzz-deps:
	$(call install_missing,$(FUZZ_PACKAGES),clang with libFuzzer (compiler-rt))

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/attn demo
	@echo
	./$(BUILD)/attn score

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-sanitize: deps
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_SANITIZE=ON
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	ATTN_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1 ctest --test-dir $(BUILD_ASAN) --output-on-failure -j $(JOBS)

# libFuzzer targets (tests/fuzz/), one at a time, FUZZ_SECONDS each; non-zero on any finding.
fuzz: deps fuzz-deps
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_FUZZ=ON \
	  -DATTN_TESTS=OFF -DATTN_OPENMP=OFF
	cmake --build $(BUILD_FUZZ) --target fuzz_all -j $(JOBS)
	sh tests/fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# Regenerates the PyTorch golden files (needs python3-torch; the tests themselves do not).
golden:
	for g in tools/golden/gen_*.py; do /usr/bin/python3 $$g || exit 1; done

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
