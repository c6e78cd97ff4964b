#!/usr/bin/env bash
# Checks deploy/systemd: `systemd-analyze verify` of the unit alone and with each drop-in,
# failing on any warning (verify exits 0 on unknown keys and only prints them), and
# `systemd-analyze security --offline=true` under an exposure threshold of 2.0 ("OK" on
# systemd's scale of 0 = locked down to 10 = exposed).
#   scripts/systemd-check.sh [BINARY]   (default: the release build, else the debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
THRESHOLD=20 # tenths: 2.0

if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd
fi
binary=${1:-}
for candidate in target/x86_64-unknown-linux-gnu/release/release-edge target/debug/release-edge; do
    [[ -n $binary ]] && break
    [[ -x $candidate ]] && binary=$candidate
done
[[ -x ${binary:-} ]] || { echo "systemd-check: no release-edge binary built yet" >&2; exit 1; }

# A root with the unit where it is installed and the binary its ExecStart names (verify
# checks that it is executable), plus the distribution's units it refers to (sysinit.target).
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp -a /lib/systemd/system "$root/usr/lib/systemd/"
install -m 0755 "$binary" "$root/usr/local/bin/release-edge"
install -m 0644 deploy/systemd/release-edge.service "$root/etc/systemd/system/"
dropins="$root/etc/systemd/system/release-edge.service.d"

check() { # check NAME DROPIN...
    local name=$1
    shift
    rm -rf "$dropins"
    mkdir -p "$dropins"
    local d
    for d in "$@"; do install -m 0644 "deploy/systemd/release-edge.service.d/$d" "$dropins/"; done
    local out
    out=$(systemd-analyze verify --root="$root" release-edge.service 2>&1) || {
        echo "$out"
        echo "systemd-check: verify failed ($name)" >&2
        return 1
    }
    if [[ -n $out ]]; then
        echo "$out"
        echo "systemd-check: verify printed warnings ($name)" >&2
        return 1
    fi
    local report exposure
    report=$(systemd-analyze security --offline=true --threshold="$THRESHOLD" --root="$root" release-edge.service 2>&1) || {
        echo "$report"
        echo "systemd-check: exposure above $((THRESHOLD / 10)).$((THRESHOLD % 10)) ($name)" >&2
        return 1
    }
    exposure=$(grep -o 'Overall exposure level for release-edge.service: [0-9.]*' <<<"$report" | awk '{print $NF}')
    echo "systemd: $name: verify clean, exposure $exposure (threshold $((THRESHOLD / 10)).$((THRESHOLD % 10)))"
}

check "release-edge.service"
check "+ bind-privileged-port.conf" bind-privileged-port.conf
check "+ tls.conf" tls.conf
check "+ both drop-ins" bind-privileged-port.conf tls.conf
# The environment file is a template: KEY=value lines only, every value commented out.
if grep -Ev '^(#.*)?$' deploy/systemd/release-edge.env; then
    echo "systemd-check: release-edge.env must hold no values (secrets are never committed)" >&2
    exit 1
fi
echo "systemd: release-edge.env holds no secrets"
