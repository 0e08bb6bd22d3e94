# attn — the two commands of the Quick start, and a few more.
#   make run            install missing Debian packages, build, run `attn demo` and `attn score`
#   make test           install missing Debian packages, build, run every test
#   make test-sanitize  the tests again, built with AddressSanitizer + UndefinedBehaviorSanitizer
#   make install PREFIX=/usr/local
BUILD      ?= build
BUILD_ASAN ?= build-asan
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DEBIAN_PACKAGES = build-essential cmake pkg-config libopenblas-openmp-dev libpng-dev zlib1g-dev

.PHONY: all deps build run test test-sanitize install golden clean

all: build

# Installs what is missing (as root through apt-get; otherwise says what to install).
deps:
	@if command -v dpkg >/dev/null 2>&1; then \
	  missing=""; \
	  for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	      echo "installing Debian packages:$$missing"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else \
	      echo "missing Debian packages:$$missing — run: sudo apt-get install$$missing"; exit 1; \
	    fi; \
	  fi; \
	else \
	  echo "not a Debian system: make sure a C compiler, CMake, pkg-config, OpenBLAS, libpng and zlib are installed"; \
	fi

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

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

# Regenerates the PyTorch golden files (needs python3-torch; the tests themselves do not).
golden:
	for g in tools/golden/gen_*.py; do /usr/bin/python3 $$g || exit 1; done

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
