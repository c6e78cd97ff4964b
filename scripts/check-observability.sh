#!/usr/bin/env bash
# Checks deploy/observability/ without a server: the alert rules and the scrape config parse
# (promtool), the alert unit tests pass (promtool test rules), the committed dashboard JSON is
# what dashboard.py generates, follows its rules, and every one of its queries parses. Installs
# Prometheus (Debian package, for promtool) and the pinned grafana-foundation-sdk (in a venv
# under target/) when missing. Which metric names exist is checked against the real server by
# `cargo test --test it prometheus::`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=deploy/observability

apt_install() {
    local sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    echo "installing: prometheus (for promtool and the end-to-end test)"
    apt_install prometheus
fi

venv=target/observability-venv
if ! cmp -s "$dir/requirements.txt" "$venv/.requirements.txt"; then
    echo "installing the Python packages of $dir (pip, pinned by requirements.txt)"
    rm -rf "$venv"
    # Debian's python3 makes virtual environments only with python3-venv installed.
    python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv" && apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
    cp "$dir/requirements.txt" "$venv/.requirements.txt"
fi

promtool check config "$dir/prometheus.yml"
promtool check rules "$dir/alerts.yml"
promtool test rules "$dir/tests/alerts_test.yml"

queries=$(mktemp --suffix=.yml)
trap 'rm -f "$queries"' EXIT
"$venv/bin/python" "$dir/dashboard.py" --check --rules "$queries"
promtool check rules "$queries"
