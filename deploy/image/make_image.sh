#!/usr/bin/env bash
# `make image`: the two-stage image with what this machine has.
#   Docker (a daemon that answers)  -> deploy/image/build_docker.sh: docker build, FROM the
#                                      python:3.11-slim-bookworm of your registry
#   buildah + podman                -> deploy/image/build.sh: offline, on a debootstrap stand-in
#                                      OS (what CI and these machines use)
#   neither                         -> one line saying how to get one
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ ${IMAGE_BUILDER:-} != buildah ]] && command -v docker >/dev/null 2>&1 \
    && docker info >/dev/null 2>&1; then
    exec bash deploy/image/build_docker.sh
fi
if command -v buildah >/dev/null 2>&1 && command -v podman >/dev/null 2>&1 \
    && command -v debootstrap >/dev/null 2>&1; then
    exec bash deploy/image/build.sh
fi
echo "make image: needs Docker (https://docs.docker.com/engine/install/) or buildah + podman" \
    "(Debian/Ubuntu: apt-get install -y buildah podman debootstrap runc uidmap fuse-overlayfs)" >&2
exit 1
