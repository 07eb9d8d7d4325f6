#!/usr/bin/env bash
# `make image-test`: run the image built by `make image` as a container against a local SQS
# server on the host and check it end to end (deploy/image/smoke.py says what is checked).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/image/common.sh
PODMAN_FLAGS="${PODMAN_FLAGS[*]}" .venv/bin/python deploy/image/smoke.py "$IMAGE_NAME:dev"
