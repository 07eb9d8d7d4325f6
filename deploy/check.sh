#!/usr/bin/env bash
# `make deploy-check` (part of `make test`): render and validate everything deployable, offline.
#   1. hadolint on the Dockerfile (error level, .hadolint.yaml)
#   2. kubectl kustomize (kustomize v5) of every overlay and example, with the image pinned by
#      digest exactly as `make deploy` does it
#   3. kubernetes-validate --strict on the built-in kinds (two Kubernetes versions)
#   4. the custom resources (ScaledObject, TriggerAuthentication, PodMonitoring, Rules) against
#      the CRD schemas in ../shared/crds (skipped, saying so, where that folder is absent)
#   5. cfn-lint on the SAM template
#   6. checkov on manifests, template and Dockerfile (skip list with reasons: deploy/checkov.yaml)
#   7. `make deploy` refuses an image that is not pinned by digest
# Tools come from PyPI into build/tools/ once (deploy/tools.sh). A tool that cannot be installed
# (no package registry) is reported as SKIP, never as a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=build/deploy-check
PY=${PY:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
rm -rf "$OUT" && mkdir -p "$OUT"
failures=() skips=()
start=$(date +%s)

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*"; failures+=("$*"); }
skip() { echo "SKIP: $*"; skips+=("$*"); }

# checkov takes the longest to install on a fresh clone (about a minute): start it now, in
# parallel with the other tools, and wait for it only when its step comes
bash deploy/tools.sh checkov >"$OUT/checkov.path" 2>"$OUT/checkov.install.log" &
checkov_install=$!
KUBECTL=$(bash deploy/tools.sh kubectl) || { KUBECTL=""; skip "kubectl: could not fetch (build/tools/pip.log)"; }
TOOLBIN=$(bash deploy/tools.sh venv) || { TOOLBIN=""; skip "validation venv: could not install (build/tools/pip.log)"; }

step "hadolint Dockerfile"
if [[ -n $TOOLBIN ]]; then
    "$TOOLBIN/hadolint" --config .hadolint.yaml --failure-threshold error Dockerfile && echo "hadolint: clean" \
        || fail "hadolint Dockerfile"
fi

step "kustomize: overlays and examples, image pinned by digest"
FAKE_IMAGE=registry.example/gpuqueue/gpuqueue-worker@sha256:$(printf '%064d' 0)
variants=()
for dir in deploy/k8s/overlays/*/ deploy/k8s/examples/*/; do
    variants+=("${dir#deploy/k8s/}")
done
rendered=()
if [[ -n $KUBECTL ]]; then
    for v in "${variants[@]}"; do
        v=${v%/}
        file="$OUT/$(echo "$v" | tr '/' '_').yaml"
        if RENDER_ONLY=1 KUBECTL=$KUBECTL OVERLAY=$v IMAGE=$FAKE_IMAGE bash deploy/apply.sh >"$file"; then
            # the digest must have reached every container: nothing deploys by tag
            if grep -E '^\s+image:' "$file" | grep -vq "@sha256:"; then
                fail "$v: an image is not pinned by digest"
            fi
            echo "$v: $(grep -c '^kind:' "$file") objects -> $file"
            rendered+=("$file")
        else
            fail "kustomize $v"
        fi
    done
    # the base alone must build too (it is what overlays start from)
    "$KUBECTL" kustomize deploy/k8s/base >"$OUT/base.yaml" || fail "kustomize base"
fi

step "kubernetes-validate --strict (built-in kinds)"
if [[ -n $TOOLBIN && ${#rendered[@]} -gt 0 ]]; then
    for k8s in 1.37.0 1.32.0; do
        # custom kinds have no schema there ("Couldn't find schema" warnings): step 4 covers them
        if "$TOOLBIN/kubernetes-validate" --strict --quiet --no-warn -k "$k8s" "${rendered[@]}"; then
            echo "kubernetes $k8s: ${#rendered[@]} renders valid"
        else
            fail "kubernetes-validate $k8s"
        fi
    done
fi

step "custom resources against ../shared/crds"
if [[ ${#rendered[@]} -gt 0 ]]; then
    crd_out=$("$PY" deploy/validate_crds.py "${rendered[@]}") || fail "CRD validation"
    echo "$crd_out"
    [[ $crd_out == SKIP* ]] && skips+=("CRD validation: ../shared/crds absent")
fi

step "cfn-lint deploy/lambda/template.yaml"
if [[ -n $TOOLBIN ]]; then
    "$TOOLBIN/cfn-lint" deploy/lambda/template.yaml && echo "cfn-lint: clean" || fail "cfn-lint"
fi

step "checkov (skips explained in deploy/checkov.yaml)"
CHECKOV=""
if wait "$checkov_install"; then
    CHECKOV=$(cat "$OUT/checkov.path")
else
    cat "$OUT/checkov.install.log"
    skip "checkov: could not install (build/tools/pip.log)"
fi
if [[ -n $CHECKOV ]]; then
    checkov_args=(--config-file deploy/checkov.yaml --output cli)
    "$CHECKOV" "${checkov_args[@]}" --framework kubernetes $(printf -- '-f %s ' "${rendered[@]}") \
        >"$OUT/checkov-k8s.txt" 2>&1 || fail "checkov kubernetes (see $OUT/checkov-k8s.txt)"
    "$CHECKOV" "${checkov_args[@]}" --framework cloudformation -f deploy/lambda/template.yaml \
        >"$OUT/checkov-cfn.txt" 2>&1 || fail "checkov cloudformation (see $OUT/checkov-cfn.txt)"
    "$CHECKOV" "${checkov_args[@]}" --framework dockerfile -f Dockerfile \
        >"$OUT/checkov-docker.txt" 2>&1 || fail "checkov dockerfile (see $OUT/checkov-docker.txt)"
    grep -h "Passed checks" "$OUT"/checkov-*.txt
    grep -h -A3 "^Check:" "$OUT"/checkov-*.txt || true
fi

step "make deploy refuses a tag"
if IMAGE=registry.example/gpuqueue-worker:latest RENDER_ONLY=1 KUBECTL=${KUBECTL:-kubectl} bash deploy/apply.sh >/dev/null 2>&1; then
    fail "deploy/apply.sh accepted an image tag"
else
    echo "refused :latest as it should"
fi

echo
echo "deploy-check: ${#failures[@]} failed, ${#skips[@]} skipped, $(( $(date +%s) - start )) s"
for s in "${skips[@]}"; do echo "  skipped: $s"; done
for f in "${failures[@]}"; do echo "  failed: $f"; done
[[ ${#failures[@]} -eq 0 ]]
