#!/usr/bin/env bash
# Lays out the files of the container image under DIR, exactly as they sit in the image:
# the static binary, the container config, the sample releases and the CA bundle (for S3 and
# GitHub over HTTPS). Used by the Dockerfile's build stage and by CI, which builds the image's
# runtime stage from the binary it compiled on the host (no registry: no base image to pull).
#   scripts/image-context.sh DIR BINARY [CA_BUNDLE]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir=${1:?usage: image-context.sh DIR BINARY [CA_BUNDLE]}
binary=${2:?usage: image-context.sh DIR BINARY [CA_BUNDLE]}
ca=${3:-/etc/ssl/certs/ca-certificates.crt}

# A dynamically linked binary (one with a program interpreter, ld.so) would start nowhere in
# a scratch image: refuse it here.
if readelf -l "$binary" | grep -q 'Requesting program interpreter'; then
    echo "image-context: $binary is dynamically linked; build it with -C target-feature=+crt-static" >&2
    exit 1
fi
rm -rf "$dir"
# Debug info off (126 MB -> 34 MB); symbols stay, so a backtrace still names functions.
install -d "$dir/usr/local/bin"
strip --strip-debug -o "$dir/usr/local/bin/release-edge" "$binary"
chmod 0755 "$dir/usr/local/bin/release-edge"
install -D -m 0644 "$repo/deploy/container/release-edge.toml" "$dir/srv/release-edge/config/release-edge.toml"
mkdir -p "$dir/srv/release-edge/samples"
cp -R "$repo/samples/releases" "$dir/srv/release-edge/samples/"
chmod -R a+rX,go-w "$dir/srv"
install -D -m 0644 "$ca" "$dir/etc/ssl/certs/ca-certificates.crt"
# The runtime user (65532) by name too, for tools that look it up (ps, id).
install -d "$dir/etc"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:release-edge:/srv/release-edge:/sbin/nologin\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
