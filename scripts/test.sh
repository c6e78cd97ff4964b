#!/usr/bin/env bash
# The test command of the README: installs what the suite needs on a fresh Debian machine
# (real clients: curl, aria2c, electron-updater run by Node with its npm packages, Velopack's
# client built by cargo; nginx
# as the CDN in front; Prometheus), checks deploy/observability/, then runs every test. Run
# from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v aria2c >/dev/null 2>&1 || missing+=(aria2)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# nginx for tests/it/cdn.rs (in /usr/sbin, which a user's PATH may lack).
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

# electron-updater and app-builder-bin, exactly as package-lock.json pins them: `npm ci` when
# node_modules is missing or was installed from another lock file.
client=tests/clients/electron-updater
if ! cmp -s "$client/package-lock.json" "$client/node_modules/.release-edge-lock.json"; then
    echo "installing the npm packages of $client (npm ci)"
    (cd "$client" && npm ci --no-audit --no-fund --ignore-scripts)
    cp "$client/package-lock.json" "$client/node_modules/.release-edge-lock.json"
fi

# Alert rules, their unit tests and the dashboard (installs Prometheus, which the end-to-end
# test `prometheus::` also runs, and the pinned grafana-foundation-sdk).
./scripts/check-observability.sh

# Velopack's client (tests/clients/velopack, its own lock file), into the same target dir so
# that the dependencies it shares with release-edge are built once; tests/it/velopack.rs
# runs it.
cargo build --locked --quiet --manifest-path tests/clients/velopack/Cargo.toml \
    --target-dir "${CARGO_TARGET_DIR:-target}"

cargo test --locked "$@"
