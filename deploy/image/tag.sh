#!/usr/bin/env bash
# Print a registry-safe image tag for a git ref name (branch), e.g. feature/GPU-42 -> feature-gpu-42.
# A tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}: slashes and anything else become '-', runs of '-'
# collapse, it may not start with '.' or '-', and it is cut to 128 characters. Lower-cased so two
# branches differing only in case do not fight over one tag on case-folding registries.
set -euo pipefail
ref=${1:?usage: tag.sh REF_NAME}
ref=${ref#refs/heads/}
tag=$(printf '%s' "$ref" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9_.-]+/-/g; s/-+/-/g; s/^[.-]+//')
tag=${tag:0:128}
tag=${tag%%-}
[[ -n $tag ]] || tag=branch
printf '%s\n' "$tag"
