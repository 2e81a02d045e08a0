#!/usr/bin/env bash
# build.sh builds recoveryd's OCI image offline with Debian's podman (its
# buildah inside): FROM scratch, so no registry is ever asked for a base.
# Usage: deploy/image/build.sh [image-name]   (default localhost/recoveryd:latest)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=${1:-localhost/recoveryd:latest}
export CONTAINERS_CONF="$here/containers.conf"

for tool in podman runc; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing: run 'make image-deps' (apt-get install podman runc)" >&2; exit 2; }
done
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || { echo "build.sh: $ca is missing: install Debian's ca-certificates" >&2; exit 2; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# Static: the SQLite driver is pure Go, so no libc is needed in the image.
# -trimpath: no build machine paths in the binary.
CGO_ENABLED=0 go build -C "$repo" -trimpath -ldflags='-s -w' -o "$ctx/recoveryd" ./cmd/recoveryd
cp "$ca" "$ctx/ca-certificates.crt"
mkdir "$ctx/data"

revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
version=$(git -C "$repo" describe --tags --always --dirty 2>/dev/null || echo dev)
podman build --quiet --network none --pull=never --layers=false \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  -f "$here/Containerfile" -t "$image" "$ctx" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "built $image (revision $revision): $((size / 1024)) KiB"
