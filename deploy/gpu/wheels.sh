#!/usr/bin/env bash
# `make gpu-wheels`, here (dev environment installed): fill .whl/ with what `make gpu-check`
# carries to a GPU machine, which has torch, transformers, tokenizers, sentence-transformers,
# pytest and numpy but no network:
#   .whl/*.whl    the worker's pure-Python needs the GPU image lacks (pydantic and friends, orjson),
#                 at the versions of this .venv, for the image's CPython (3.12, manylinux x86-64)
#   .whl/minilm/  MiniLM's tokenizer and sentence-transformers files, no weights (~0.7 MB):
#                 gpu-check builds random-weight models of real sizes around them
#   .whl/COMMIT   the commit carried (the device gets the tree without .git)
# Everything that travels (tree + .whl) must stay under 64 MiB; this script checks it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DEST=.whl
GPU_PYTHON=${GPU_PYTHON:-3.12}
NAMES="pydantic pydantic-core pydantic-settings annotated-types typing-inspection python-dotenv
typing-extensions orjson"

mkdir -p "$DEST"
rm -f "$DEST"/*.whl
# one version of each (two stop the install there): the ones this .venv runs
# shellcheck disable=SC2086
pins=$("$PY" -c 'import sys, importlib.metadata as m; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' $NAMES)
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --implementation cp \
    --python-version "$GPU_PYTHON" --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$DEST" $pins

rm -rf "$DEST/minilm"
"$PY" -c 'import sys; sys.path.insert(0, "."); from pathlib import Path
from bench import gpu_models
target = Path(sys.argv[1]); target.mkdir(parents=True, exist_ok=True)
gpu_models.copy_minilm_files(target)' "$DEST/minilm"

{ git rev-parse HEAD; git status --porcelain --untracked-files=no | grep -q . && echo dirty; } \
    >"$DEST/COMMIT" || true

carried=$(du -sb "$DEST" | cut -f1)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
total=$(( (carried + tree) / 1024 / 1024 ))
ls -1 "$DEST"
echo "gpu-wheels: .whl $((carried / 1024)) KiB + tree $((tree / 1024)) KiB = ${total} MiB (limit 64)"
(( total < 60 )) || { echo "gpu-wheels: too much to carry" >&2; exit 1; }
