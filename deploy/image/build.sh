#!/usr/bin/env bash
# Build the two-stage worker image with buildah, offline from any image registry.
#
#   base  - Python + torch + the worker's heavy deps (deploy/requirements-base.txt), non-root user.
#           Rebuilt only when its inputs change (the hash below), like the weekly/on-change CI job.
#   app   - FROM the base: the worker code only. Rebuilt on every code change, seconds.
#
# No registry is reachable here, so the OS under the base is a stand-in made with debootstrap
# (Debian bookworm + python3 = Python 3.11, matching the torch 2.13.0 CPU wheel on this disk).
# In CI with a registry the base starts FROM python:3.11-slim-bookworm instead (see the workflows).
#
# Env: IMAGE_STORE (buildah storage root, default build/containers), IMAGE_NAME (default
# localhost/gpuqueue-worker), FORCE_BASE=1 rebuilds the base even if its hash is unchanged.
# Prints the time of each stage it built (build/image/*.seconds).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/image/common.sh

mkdir -p "$IMAGE_WORK"
echo "image: buildah $(buildah --version | cut -d' ' -f3), storage driver $STORAGE_DRIVER ($IMAGE_STORE)"

# 1. Stand-in OS image (stands in for pulling python:3.11-slim-bookworm from a registry).
if ! image_exists "$OS_IMAGE"; then
    t0=$(date +%s)
    rootfs="$IMAGE_WORK/rootfs"
    rm -rf "$rootfs"
    echo "image: debootstrap bookworm (minbase + python3) into $rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >"$IMAGE_WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$IMAGE_WORK/debootstrap.log"; exit 1; }
    # apt lists and caches are dead weight in an image
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$IMAGE_WORK/rootfs.tar" .
    bah import "$IMAGE_WORK/rootfs.tar" "$OS_IMAGE" >/dev/null 2>&1 \
        || podman "${PODMAN_FLAGS[@]}" import "$IMAGE_WORK/rootfs.tar" "$OS_IMAGE" >/dev/null
    rm -rf "$rootfs" "$IMAGE_WORK/rootfs.tar"
    echo "image: stand-in OS ready in $(( $(date +%s) - t0 )) s"
fi

# 2. Base stage, only when its inputs changed.
base_hash=$(cat Dockerfile deploy/requirements-base.txt deploy/requirements-model.txt | sha256sum | cut -c1-16)
base_tag="$BASE_IMAGE_NAME:$base_hash"
if [[ "${FORCE_BASE:-0}" == 1 ]] || ! image_exists "$base_tag"; then
    t0=$(date +%s.%N)
    build_stage base "$base_tag" --build-arg "PYTHON_IMAGE=$OS_IMAGE" \
        --build-arg "PIP_FIND_LINKS=/opt/wheels" "${WHEEL_MOUNTS[@]}"
    t1=$(date +%s.%N)
    printf 'image: base stage built in %.1f s (%s)\n' "$(echo "$t1 - $t0" | bc)" "$base_tag"
    echo "$t1 - $t0" | bc >"$IMAGE_WORK/base.seconds"
else
    echo "image: base $base_tag up to date (inputs unchanged)"
fi

# 3. App stage on that base: code only.
t0=$(date +%s.%N)
build_stage app "$IMAGE_NAME:dev" --build-arg "BASE_IMAGE=$base_tag"
t1=$(date +%s.%N)
printf 'image: app stage built in %.1f s (%s)\n' "$(echo "$t1 - $t0" | bc)" "$IMAGE_NAME:dev"
echo "$t1 - $t0" | bc >"$IMAGE_WORK/app.seconds"
