#!/usr/bin/env bash
# The two-stage image with Docker (BuildKit), the way users build it: the base stage only when
# its inputs changed (tagged by their hash, as the weekly/on-change CI job does), then the app.
#   IMAGE_NAME (default gpuqueue-worker), BASE_IMAGE_NAME (default gpuqueue-base),
#   PYTHON_IMAGE (default python:3.11-slim-bookworm), FORCE_BASE=1
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE_NAME=${IMAGE_NAME:-gpuqueue-worker}
BASE_IMAGE_NAME=${BASE_IMAGE_NAME:-gpuqueue-base}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
base_hash=$(cat Dockerfile deploy/requirements-base.txt deploy/requirements-model.txt | sha256sum | cut -c1-16)
base_tag="$BASE_IMAGE_NAME:$base_hash"
if [[ ${FORCE_BASE:-0} == 1 ]] || ! docker image inspect "$base_tag" >/dev/null 2>&1; then
    docker build --target base --tag "$base_tag" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" .
fi
docker build --target app --tag "$IMAGE_NAME:dev" --build-arg "BASE_IMAGE=$base_tag" .
echo "image: $IMAGE_NAME:dev on $base_tag"
