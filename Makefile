# dataswarm developer entry points. `make test` is the one CI runs (through .ci/run).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
# Which llama.cpp backend to build: cpu (default), cuda (NVIDIA), hip (AMD ROCm), vulkan (any GPU
# with a Vulkan driver), metal (macOS). `make install LLAMA_BACKEND=cuda` switches the venv; the venv
# remembers its backend (.venv/.llama-backend), so a later `make test` or `make demo` keeps it, and
# `make install LLAMA_BACKEND=cpu` switches back. `dataswarm node doctor` says which one fits.
LLAMA_BACKENDS := cpu cuda hip vulkan metal
ifeq ($(origin LLAMA_BACKEND),undefined)
LLAMA_BACKEND := $(or $(shell cat $(VENV)/.llama-backend 2>/dev/null),cpu)
endif
ifeq ($(filter $(LLAMA_BACKEND),$(LLAMA_BACKENDS)),)
$(error LLAMA_BACKEND=$(LLAMA_BACKEND) is not one of: $(LLAMA_BACKENDS))
endif
# Portable x86-64 build (AVX2/FMA/F16C, no -march=native): one wheel runs on every
# node of this class, and identical builds are what makes replicas byte-comparable.
# GPU builds keep the same CPU flags (layers left on the CPU run that code); their outputs are not
# expected to match CPU replicas byte for byte (other kernels), which is what prefill re-scoring is for.
LLAMA_CPU_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_COMMON_ARGS := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
# CUDA_ARCHITECTURES=86 (or "native") builds for one GPU generation only: much faster to compile
# than llama.cpp's default list, and a wheel of its own.
CUDA_ARCHITECTURES ?=
LLAMA_ARGS_cpu := $(LLAMA_CPU_ARGS)
LLAMA_ARGS_cuda := $(LLAMA_CPU_ARGS) -DGGML_CUDA=ON $(if $(CUDA_ARCHITECTURES),-DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHITECTURES))
LLAMA_ARGS_hip := $(LLAMA_CPU_ARGS) -DGGML_HIP=ON
LLAMA_ARGS_vulkan := $(LLAMA_CPU_ARGS) -DGGML_VULKAN=ON
LLAMA_ARGS_metal := -DGGML_METAL=ON
# The cpu value is byte-for-byte the one from before LLAMA_BACKEND existed: its cached wheel stays valid.
LLAMA_CMAKE_ARGS ?= $(strip $(LLAMA_ARGS_$(LLAMA_BACKEND)) $(LLAMA_COMMON_ARGS))
# What each backend's compiler needs, checked before a build that would fail minutes in.
LLAMA_NEEDS_cuda := command -v nvcc >/dev/null || { echo "LLAMA_BACKEND=cuda needs the CUDA toolkit: nvcc is not on PATH (install nvidia-cuda-toolkit, or add /usr/local/cuda/bin to PATH)"; exit 1; }
LLAMA_NEEDS_hip := command -v hipconfig >/dev/null || { echo "LLAMA_BACKEND=hip needs ROCm: hipconfig is not on PATH (install ROCm, or use LLAMA_BACKEND=vulkan)"; exit 1; }
LLAMA_NEEDS_vulkan := command -v glslc >/dev/null && pkg-config --exists vulkan || { echo "LLAMA_BACKEND=vulkan needs the Vulkan headers and glslc (apt-get install libvulkan-dev glslc)"; exit 1; }
LLAMA_NEEDS_metal := [ "$$(uname -s)" = Darwin ] || { echo "LLAMA_BACKEND=metal is for macOS"; exit 1; }
LLAMA_ENV_hip := HIPCXX="$$(hipconfig -l)/clang" HIP_PATH="$$(hipconfig -R)"
WHEEL_CACHE ?= $(HOME)/.cache/dataswarm/wheels
LLAMA_HASH := $(shell echo '$(LLAMA_CMAKE_ARGS)' | { sha256sum 2>/dev/null || shasum -a 256; } | cut -c1-12)
LLAMA_WHEEL_DIR := $(WHEEL_CACHE)/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_HASH)
# Which wheel the venv holds; a different backend (or cmake args) is another stamp, so make reinstalls.
LLAMA_STAMP := $(VENV)/.llama-$(LLAMA_BACKEND)-$(LLAMA_HASH)

SYSTEM_PACKAGES := libgmp-dev python3.11-doc sqlite3-doc chromium docker-compose systemd
# libgmp-dev: libp2p's fastecdsa compiles against it. python3.11-doc: the demo's local corpus.
# sqlite3-doc: the second corpus of bench/quality.py (with python3.11-doc).
# chromium: the dashboard's browser test (driven by playwright, which never downloads a browser here).
# docker-compose, systemd: static checks of deploy/ (compose config, systemd-analyze verify); no engine needed.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: system-deps install test lint demo bench bench-full fuzz soak clean

system-deps:
	@command -v dpkg >/dev/null || { echo "not Debian/Ubuntu: install GMP (libgmp) and Python 3.11 yourself"; exit 0; }; \
	missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | system-deps
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required: install python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(build_llama_wheel)
	$(BIN)/pip install -q --find-links $(LLAMA_WHEEL_DIR) -e '.[dev]'
	touch $@

# Build the wheel for LLAMA_BACKEND unless it is cached (about 8 minutes on 2 cores for cpu; GPU
# builds take longer: CUDA compiles kernels for every listed architecture).
define build_llama_wheel
	@if ! ls $(LLAMA_WHEEL_DIR)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		$(if $(LLAMA_NEEDS_$(LLAMA_BACKEND)),$(LLAMA_NEEDS_$(LLAMA_BACKEND));) \
		echo "Building llama-cpp-python $(LLAMA_VERSION) for $(LLAMA_BACKEND) once (cpu: about 8 minutes on 2 cores; GPU backends take longer); cached in $(LLAMA_WHEEL_DIR)"; \
		mkdir -p $(LLAMA_WHEEL_DIR).tmp && \
		$(LLAMA_ENV_$(LLAMA_BACKEND)) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel -q --no-deps llama-cpp-python==$(LLAMA_VERSION) -w $(LLAMA_WHEEL_DIR).tmp && \
		rm -rf $(LLAMA_WHEEL_DIR) && mv $(LLAMA_WHEEL_DIR).tmp $(LLAMA_WHEEL_DIR); \
	fi
endef

# The venv's llama-cpp-python comes from LLAMA_BACKEND's wheel (pip would keep any 0.3.36 it has).
$(LLAMA_STAMP): $(VENV)/.installed
	$(build_llama_wheel)
	$(BIN)/pip install -q --no-deps --force-reinstall --no-index --find-links $(LLAMA_WHEEL_DIR) llama-cpp-python==$(LLAMA_VERSION)
	rm -f $(VENV)/.llama-*-*
	echo $(LLAMA_BACKEND) > $(VENV)/.llama-backend
	touch $@

install: $(LLAMA_STAMP)

test: $(LLAMA_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(LLAMA_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy protocol network node coordinator cli settings

demo: $(LLAMA_STAMP)
	$(BIN)/dataswarm demo $(DEMO_ARGS)

# Every benchmark, then bench/RESULTS.md (about 15-20 min on 2 cores; bench/run_all.py says what runs).
bench: $(LLAMA_STAMP)
	$(BIN)/python bench/run_all.py

# What the goals are stated for (about an hour on 2 cores): P4/P2 on a 100-row job, P2 with 25%
# cheating nodes, P5 at 1000 hosts without a time budget; into bench/RESULTS-full.md.
bench-full: $(LLAMA_STAMP)
	$(BIN)/python bench/run_all.py --full --out bench/RESULTS-full.md

# Fuzz every entry point that takes bytes from a peer (1.14e6 inputs) and the HTTP API (1e4 schemathesis
# cases); about 8 min on 2 busy cores. FUZZ_ARGS passes --seed/--only/--figures/--crash-dir through.
# CI runs the short version (tests/protocol/test_fuzz_budget.py).
fuzz: $(LLAMA_STAMP)
	$(BIN)/python bench/fuzz.py --budget 1 $(FUZZ_ARGS)

# A 30-minute job on the real network under churn (a node kill -9ed and restarted every 60 s, the coordinator
# kill -9ed twice, one node's clock 20 s off), then up to 10 min for the job to be delivered. SOAK_ARGS passes
# --minutes/--rows/--workdir/--json-out through (bench/soak.py --help).
soak: $(LLAMA_STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
