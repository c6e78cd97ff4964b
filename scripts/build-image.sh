#!/usr/bin/env bash
# Builds the container image with no registry to pull from: compiles the static binary on
# the host (glibc, +crt-static), lays out the image's files with image-context.sh, and builds
# the Dockerfile's `runtime` stage from them with podman (the `build` stage, which compiles
# inside rust:1.95, needs a registry: `docker build .` elsewhere).
#   scripts/build-image.sh [TAG]      default: localhost/release-edge:VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
tag=${1:-localhost/release-edge:$version}
target=x86_64-unknown-linux-gnu

start=$(date +%s)
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target"
echo "image: static release build took $(($(date +%s) - start)) s"

context=target/image-context
scripts/image-context.sh "$context/dist" "target/$target/release/release-edge"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
podman build --quiet --format docker \
    --build-arg DIST_STAGE=prebuilt \
    --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" \
    --tag "$tag" --file Dockerfile "$context" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "image: built $tag, $((size / 1024 / 1024)) MiB ($size bytes)"
