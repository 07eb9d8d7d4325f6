# Shared settings for deploy/image/*.sh (sourced, not run).
# buildah/podman flags that work on these CI machines (root in a container, no systemd): chroot
# isolation, podman with runc and cgroupfs, and the overlay storage driver where the kernel lets
# us mount overlayfs, else vfs (which works everywhere but copies the whole tree for every
# container and layer: an app-only rebuild then costs a copy of the base).
IMAGE_WORK=${IMAGE_WORK:-$PWD/build/image}
IMAGE_NAME=${IMAGE_NAME:-localhost/gpuqueue-worker}
BASE_IMAGE_NAME=${BASE_IMAGE_NAME:-localhost/gpuqueue-base}
OS_IMAGE=${OS_IMAGE:-localhost/gpuqueue-standin-os:bookworm}

overlay_mountable() {
    local d
    d=$(mktemp -d)
    mkdir -p "$d"/{lower,upper,work,merged}
    if mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/merged" 2>/dev/null; then
        umount "$d/merged"
        rm -rf "$d"
        return 0
    fi
    rm -rf "$d"
    return 1
}
if [[ -z ${STORAGE_DRIVER:-} ]]; then
    if overlay_mountable; then STORAGE_DRIVER=overlay; else STORAGE_DRIVER=vfs; fi
fi
# one store per driver: a store made by one driver cannot be opened by the other
IMAGE_STORE=${IMAGE_STORE:-$PWD/build/containers/$STORAGE_DRIVER}
STORAGE_FLAGS=(--root "$IMAGE_STORE/root" --runroot "$IMAGE_STORE/run" --storage-driver "$STORAGE_DRIVER")
PODMAN_FLAGS=("${STORAGE_FLAGS[@]}" --runtime runc --cgroup-manager cgroupfs --events-backend file)
# pip inside the build: the torch CPU wheel lies on this disk, and HTTPS to PyPI needs the host's
# CA bundle (the machine's proxy re-signs TLS).
HOST_CA=/etc/ssl/certs/ca-certificates.crt
WHEEL_MOUNTS=()
[[ -d /opt/wheels ]] && WHEEL_MOUNTS+=(--volume /opt/wheels:/opt/wheels:ro)
[[ -f $HOST_CA ]] && WHEEL_MOUNTS+=(--volume "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro")

for tool in buildah podman debootstrap; do
    command -v "$tool" >/dev/null || {
        echo "image: $tool not found; install with: apt-get install -y buildah podman debootstrap runc" >&2
        exit 1
    }
done

bah() { buildah "${STORAGE_FLAGS[@]}" "$@"; }
image_exists() { bah inspect --type image "$1" >/dev/null 2>&1; }

# build_stage TARGET TAG [extra buildah args...]
build_stage() {
    local target=$1 tag=$2
    shift 2
    # --format docker keeps HEALTHCHECK (the OCI format has no such field);
    # --layers=false: one layer per stage (with vfs every layer is a full copy of the tree).
    bah bud --isolation chroot --format docker --layers=false --target "$target" \
        --tag "$tag" "$@" -f "${CONTEXT:-.}/Dockerfile" "${CONTEXT:-.}" >"$IMAGE_WORK/build-$target.log" 2>&1 \
        || { tail -40 "$IMAGE_WORK/build-$target.log"; return 1; }
}
