# Shared settings for deploy/image/*.sh (sourced, not run).
# buildah/podman flags that work on these CI machines (root in a container, no overlay mounts,
# no systemd): the vfs storage driver and chroot isolation; podman runs containers with runc.
IMAGE_STORE=${IMAGE_STORE:-$PWD/build/containers}
IMAGE_WORK=${IMAGE_WORK:-$PWD/build/image}
IMAGE_NAME=${IMAGE_NAME:-localhost/gpuqueue-worker}
BASE_IMAGE_NAME=${BASE_IMAGE_NAME:-localhost/gpuqueue-base}
OS_IMAGE=${OS_IMAGE:-localhost/gpuqueue-standin-os:bookworm}
STORAGE_FLAGS=(--root "$IMAGE_STORE/root" --runroot "$IMAGE_STORE/run" --storage-driver vfs)
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
    # --layers=false: one layer per stage, since every vfs layer is a full copy of the tree.
    bah bud --isolation chroot --format docker --layers=false --target "$target" \
        --tag "$tag" "$@" -f Dockerfile . >"$IMAGE_WORK/build-$target.log" 2>&1 \
        || { tail -40 "$IMAGE_WORK/build-$target.log"; return 1; }
}
