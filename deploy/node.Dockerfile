# syntax=docker/dockerfile:1
# dataswarm volunteer node.
#
# Build from the repository root:
#   docker build -f deploy/node.Dockerfile -t dataswarm-node .
# Run (outbound-only: no port needs publishing; see docs/volunteer.md):
#   docker run -d --name dataswarm-node --restart unless-stopped \
#     -v dataswarm-node:/var/lib/dataswarm -v "$HOME/models:/models:ro" \
#     -e DATASWARM_NODE_BOOTSTRAP='["/ip4/203.0.113.10/tcp/4001/p2p/12D3KooW..."]' \
#     -e DATASWARM_NODE_TRUSTED_COORDINATORS='["12D3KooW..."]' \
#     dataswarm-node
#
# CUDA variant (NVIDIA GPU; run with `--gpus all` and the NVIDIA container toolkit):
#   docker build -f deploy/node.Dockerfile -t dataswarm-node:cuda \
#     --build-arg BASE=nvidia/cuda:12.6.3-devel-ubuntu24.04 \
#     --build-arg RUNTIME_BASE=nvidia/cuda:12.6.3-runtime-ubuntu24.04 \
#     --build-arg CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" .
# Ubuntu 24.04, not 22.04: dataswarm needs Python >= 3.11 and 22.04's python3 is 3.10.
# Bases without Python get Debian/Ubuntu's python3 from apt (both stages alike, so the
# virtual environment copied between them finds the same interpreter at the same path).
#
# The llama-cpp-python wheel is built with the Makefile's portable flags (LLAMA_VERSION and
# LLAMA_CMAKE_ARGS there; tests/deploy checks that the two agree): identical builds are what
# makes replicas byte-comparable across nodes, and no -march=native wheel can crash on
# another CPU. The builder stage is instruction-for-instruction the same as in
# coordinator.Dockerfile, so building both images compiles llama.cpp once (layer cache).

ARG BASE=python:3.11-slim-bookworm
ARG RUNTIME_BASE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- build
FROM ${BASE} AS build
ARG LLAMA_VERSION=0.3.36
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Debian's versions are not pinned: a pin breaks at the next point release, and the
# pinned base image already fixes the distribution. libgmp-dev: libp2p's fastecdsa.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake libgmp-dev \
    && if ! command -v python3 >/dev/null; then \
        apt-get install -y --no-install-recommends python3 python3-dev python3-venv; fi \
    && rm -rf /var/lib/apt/lists/*
# A current pip, not the one ensurepip bundles: pip < 23.3 does not normalise extras
# (PEP 685), so jusText's `lxml[html_clean]` would come without lxml_html_clean and
# trafilatura would fail to import.
RUN python3 -m venv /opt/dataswarm/venv \
    && /opt/dataswarm/venv/bin/pip install "pip==26.3"
ENV PATH=/opt/dataswarm/venv/bin:$PATH
RUN CMAKE_ARGS="$CMAKE_ARGS" pip wheel --no-deps "llama-cpp-python==${LLAMA_VERSION}" -w /wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protocol protocol
COPY network network
COPY node node
COPY coordinator coordinator
COPY cli cli
COPY settings settings
RUN pip install --find-links /wheels . \
    && python -I -c "import llama_cpp, cli.main" \
    && find /opt/dataswarm/venv -name __pycache__ -prune -exec rm -rf {} +

# ---------------------------------------------------------------------------- runtime
FROM ${RUNTIME_BASE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# libgomp1: llama.cpp's OpenMP; libgmp10: fastecdsa; libstdc++6: llama.cpp.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libgmp10 libstdc++6 ca-certificates \
    && if ! command -v python3 >/dev/null; then \
        apt-get install -y --no-install-recommends python3; fi \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 dataswarm \
    && useradd --system --uid 10001 --gid dataswarm --home-dir /var/lib/dataswarm --shell /usr/sbin/nologin dataswarm \
    && install -d -o dataswarm -g dataswarm -m 0750 /var/lib/dataswarm /var/lib/dataswarm-shared \
    && install -d -o dataswarm -g dataswarm -m 0755 /models
COPY --from=build /opt/dataswarm/venv /opt/dataswarm/venv
COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY --chmod=0755 deploy/healthcheck.py /opt/dataswarm/healthcheck.py

# Everything the node writes lives under /var/lib/dataswarm (platformdirs follows XDG):
#   config/dataswarm/node.key   identity (0600)        data/dataswarm/node/receipts.jsonl
#   data/dataswarm/corpus.sqlite local search index    cache/dataswarm/ model digest cache
# GGUF files go in /models (mount read-only); HF_HOME makes a mounted Hugging Face cache
# at /models/huggingface usable by name ("ORG/NAME"). Nothing is ever downloaded.
# mDNS is off (multicast does not cross Docker networks); the environment beats a TOML
# file, so turn it on with -e DATASWARM_NODE_MDNS=true (and --network host), not in TOML.
ENV PATH=/opt/dataswarm/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/dataswarm \
    XDG_CONFIG_HOME=/var/lib/dataswarm/config \
    XDG_DATA_HOME=/var/lib/dataswarm/data \
    XDG_CACHE_HOME=/var/lib/dataswarm/cache \
    HF_HOME=/models/huggingface \
    DATASWARM_NODE_MDNS=false
VOLUME ["/var/lib/dataswarm", "/models"]
# Numeric, so that runtimes that check "non-root" (Kubernetes runAsNonRoot) can tell.
USER 10001:10001
WORKDIR /var/lib/dataswarm
EXPOSE 4001/tcp
# A TCP connect to the libp2p port(s) of the effective config: cheap, no model, no peers.
# (`dataswarm node doctor` is the thorough check; run it by hand.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/opt/dataswarm/venv/bin/python", "/opt/dataswarm/healthcheck.py", "node"]
# Python as PID 1 ignores SIGTERM (no handler installed), so `docker stop` would wait 10 s and
# SIGKILL; SIGINT raises KeyboardInterrupt and trio cancels everything within a second.
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
# --quiet: no status line every 5 s in the log; `dataswarm node receipts` gives the totals.
CMD ["node", "start", "--quiet"]
