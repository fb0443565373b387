# dataswarm developer entry points. `make test` is the one CI runs (through .ci/run).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LLAMA_VERSION := 0.3.36
# Portable x86-64 build (AVX2/FMA/F16C, no -march=native): one wheel runs on every
# node of this class, and identical builds are what makes replicas byte-comparable.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
WHEEL_CACHE ?= $(HOME)/.cache/dataswarm/wheels
LLAMA_WHEEL_DIR := $(WHEEL_CACHE)/llama-cpp-python-$(LLAMA_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)

SYSTEM_PACKAGES := libgmp-dev python3.11-doc sqlite3-doc chromium docker-compose systemd
# libgmp-dev: libp2p's fastecdsa compiles against it. python3.11-doc: the demo's local corpus.
# sqlite3-doc: the second corpus of bench/quality.py (with python3.11-doc).
# chromium: the dashboard's browser test (driven by playwright, which never downloads a browser here).
# docker-compose, systemd: static checks of deploy/ (compose config, systemd-analyze verify); no engine needed.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: system-deps install test lint demo bench bench-full clean

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | system-deps
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required: install python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if ! ls $(LLAMA_WHEEL_DIR)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		echo "Building llama-cpp-python $(LLAMA_VERSION) once (about 8 minutes on 2 cores); cached in $(LLAMA_WHEEL_DIR)"; \
		mkdir -p $(LLAMA_WHEEL_DIR).tmp && \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel -q --no-deps llama-cpp-python==$(LLAMA_VERSION) -w $(LLAMA_WHEEL_DIR).tmp && \
		rm -rf $(LLAMA_WHEEL_DIR) && mv $(LLAMA_WHEEL_DIR).tmp $(LLAMA_WHEEL_DIR); \
	fi
	$(BIN)/pip install -q --find-links $(LLAMA_WHEEL_DIR) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy protocol network node coordinator cli

demo: $(VENV)/.installed
	$(BIN)/dataswarm demo $(DEMO_ARGS)

# Every benchmark, then bench/RESULTS.md (about 15-20 min on 2 cores; bench/run_all.py says what runs).
bench: $(VENV)/.installed
	$(BIN)/python bench/run_all.py

# What the goals are stated for (about an hour on 2 cores): P4/P2 on a 100-row job, P2 with 25%
# cheating nodes, P5 at 1000 hosts without a time budget; into bench/RESULTS-full.md.
bench-full: $(VENV)/.installed
	$(BIN)/python bench/run_all.py --full --out bench/RESULTS-full.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
