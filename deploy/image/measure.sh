#!/usr/bin/env bash
# Full image build vs app-only rebuild after a code change, measured back to back, as a ratio.
#   bash deploy/image/measure.sh          (STORAGE_DRIVER=vfs to measure the vfs fallback)
# Full = the base stage from scratch (venv, torch, deps, model) + the app stage on it.
# App-only = the app stage again after a one-line change to worker code, on the cached base:
# what every commit costs in CI once the weekly base exists.
# The stand-in OS (debootstrap) is outside both: it stands in for pulling python:3.11-slim.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/image/common.sh
mkdir -p "$IMAGE_WORK"
bash deploy/image/build.sh >/dev/null  # the stand-in OS and a base exist

now() { date +%s.%N; }
tag=$BASE_IMAGE_NAME:measure

t0=$(now)
build_stage base "$tag" --build-arg "PYTHON_IMAGE=$OS_IMAGE" --build-arg "PIP_FIND_LINKS=/opt/wheels" "${WHEEL_MOUNTS[@]}"
t1=$(now)
build_stage app "$IMAGE_NAME:measure" --build-arg "BASE_IMAGE=$tag"
t2=$(now)

# a code change, made in a copy of the build context so the work tree stays untouched
ctx=$IMAGE_WORK/context
rm -rf "$ctx" && mkdir -p "$ctx/deploy"
cp -r Dockerfile .dockerignore worker "$ctx/"
cp deploy/requirements-*.txt "$ctx/deploy/"
echo "# measure.sh: a code change at $(date -u +%FT%TZ)" >>"$ctx/worker/__init__.py"
t3=$(now)
CONTEXT=$ctx build_stage app "$IMAGE_NAME:measure" --build-arg "BASE_IMAGE=$tag"
t4=$(now)
rm -rf "$ctx"

python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$STORAGE_DRIVER" <<'PY'
import sys
sys.path.insert(0, ".")
from bench import results  # stdlib only: this runs under the system python3

t0, t1, t2, t3, t4 = map(float, sys.argv[1:6])
base, app, rebuild = t1 - t0, t2 - t1, t4 - t3
full = base + app
print(f"storage driver: {sys.argv[6]}")
print(f"full build (base + app): {full:7.1f} s  (base {base:.1f} s, app {app:.1f} s)")
print(f"app-only rebuild after a code change: {rebuild:7.1f} s")
print(f"ratio app-only / full: {rebuild / full:.4f}  (goal <= 0.05)")
name = "image-build" if sys.argv[6] != "vfs" else "image-build-vfs"
results.write(name, {
    "storage_driver": sys.argv[6], "full_s": round(full, 1), "base_s": round(base, 1),
    "app_s": round(app, 1), "app_only_rebuild_s": round(rebuild, 1),
    "ratio_app_only_vs_full": round(rebuild / full, 4), "goal_ratio": 0.05,
})
PY
