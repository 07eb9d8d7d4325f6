#!/usr/bin/env bash
# `make deploy`: apply one overlay with the worker image pinned by digest, then wait for the rollout.
#   make deploy OVERLAY=gke-l4 IMAGE=europe-docker.pkg.dev/P/R/gpuqueue-worker@sha256:<64 hex>
# OVERLAY is a folder under deploy/k8s/overlays/ or a path under deploy/k8s/ (examples/team-a-l4)
# or any folder with a kustomization. RENDER_ONLY=1 prints the manifests and applies nothing.
# A new digest changes the pod template, so Kubernetes rolls the pods itself: no `:latest`, no
# imagePullPolicy: Always, no annotation tricks. To restart on the same image:
#   kubectl -n NS rollout restart deployment/NAME && kubectl -n NS rollout status deployment/NAME
set -euo pipefail
cd "$(dirname "$0")/.."
OVERLAY=${OVERLAY:-gke-l4}
IMAGE=${IMAGE:-}
KUBECTL=${KUBECTL:-$(bash deploy/tools.sh kubectl)}

if [[ ! $IMAGE =~ ^([a-z0-9.:/_-]+)@(sha256:[0-9a-f]{64})$ ]]; then
    echo "deploy: IMAGE must be REPOSITORY@sha256:<64 hex> (a digest, never a tag), got '${IMAGE}'" >&2
    echo "        e.g. IMAGE=\$(crane digest --full-ref REG/gpuqueue-worker:\$GIT_SHA)" >&2
    exit 2
fi
repository=${BASH_REMATCH[1]} digest=${BASH_REMATCH[2]}

if [[ -d deploy/k8s/overlays/$OVERLAY ]]; then src=deploy/k8s/overlays/$OVERLAY
elif [[ -d deploy/k8s/$OVERLAY ]]; then src=deploy/k8s/$OVERLAY
elif [[ -f $OVERLAY/kustomization.yaml ]]; then src=$OVERLAY
else echo "deploy: no overlay '$OVERLAY' (deploy/k8s/overlays/: $(ls deploy/k8s/overlays | tr '\n' ' '))" >&2; exit 2
fi

# A throw-away kustomization on top of the overlay: the digest never gets committed to the repo.
work=build/deploy/$(echo "$OVERLAY" | tr '/.' '__')
mkdir -p "$work"
cat >"$work/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$work" "$src")
images:
  - name: gpuqueue-worker
    newName: $repository
    digest: $digest
YAML

"$KUBECTL" kustomize "$work" >"$work/rendered.yaml"
if [[ ${RENDER_ONLY:-0} == 1 ]]; then
    cat "$work/rendered.yaml"
    exit 0
fi
"$KUBECTL" apply -k "$work"
# every Deployment in the render: wait until its new pods are ready (models loaded)
awk '/^kind: Deployment$/{d=1} d&&/^  name:/{n=$2} d&&/^  namespace:/{ns=$2} /^---$/{if(d)print ns, n; d=0} END{if(d)print ns, n}' \
    "$work/rendered.yaml" | while read -r ns name; do
    "$KUBECTL" -n "$ns" rollout status "deployment/$name" --timeout=20m
done
