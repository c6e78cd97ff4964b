#!/usr/bin/env bash
# Checks deploy/systemd: `systemd-analyze verify` of the unit alone and with each drop-in,
# failing on any warning (verify exits 0 on unknown keys and only prints them),
# `systemd-analyze security --offline=true` under an exposure threshold of 2.0 ("OK" on
# systemd's scale of 0 = locked down to 10 = exposed), then the unit run by systemd as PID 1
# in a container (below).
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

# --- the unit run by systemd -----------------------------------------------------------------
# No systemd runs as PID 1 on CI's machine, so the unit runs under systemd as PID 1 in a
# container: a Debian root made with debootstrap (from apt's own mirror), imported into
# podman, privileged so that systemd can build the unit's sandbox (mount namespaces,
# seccomp). Checked: it serves, with a dynamic uid, no capabilities, no_new_privs and a
# seccomp filter; `systemctl stop` ends in a drain and exit 0; port 443 is refused without
# bind-privileged-port.conf and served with it, with CAP_NET_BIND_SERVICE alone.
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh
command -v debootstrap >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
rootfs=target/systemd-rootfs
image=localhost/release-edge-systemd-test:ci
if [[ ! -e $rootfs/.complete ]]; then
    rm -rf "$rootfs"
    # shellcheck disable=SC1091
    suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [[ -n $mirror ]] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl "$suite" "$rootfs" "$mirror" >"$root/debootstrap.log" 2>&1 ||
        { tail -n 20 "$root/debootstrap.log"; echo "systemd-check: debootstrap failed" >&2; exit 1; }
    touch "$rootfs/.complete"
fi
tar -C "$rootfs" -c . | podman import --quiet - "$image" >/dev/null
ctr=re-ci-systemd
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'podman rm -f -t 0 "$ctr" >/dev/null 2>&1 || true; podman rmi "$image" >/dev/null 2>&1 || true; rm -rf "$root"' EXIT
podman rm -f "$ctr" >/dev/null 2>&1 || true
podman run -d --name "$ctr" --systemd=always --privileged -p "127.0.0.1:$port:8080" "$image" /sbin/init >/dev/null
in_ctr() { podman exec "$ctr" "$@"; }
fail_unit() {
    in_ctr journalctl -u release-edge --no-pager -o cat | tail -n 20 >&2 || true
    echo "systemd-check: FAIL: $*" >&2
    exit 1
}
for i in $(seq 1 100); do
    state=$(in_ctr systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    ((i < 100)) || fail_unit "systemd did not come up ($state)"
    sleep 0.2
done
podman cp "$binary" "$ctr:/usr/local/bin/release-edge"
podman cp deploy/systemd/release-edge.service "$ctr:/etc/systemd/system/release-edge.service"
in_ctr mkdir -p /etc/release-edge
podman cp deploy/systemd/release-edge.toml "$ctr:/etc/release-edge/release-edge.toml"
podman cp deploy/systemd/release-edge.env "$ctr:/etc/release-edge/release-edge.env"
in_ctr chmod 0600 /etc/release-edge/release-edge.env
in_ctr systemctl daemon-reload
in_ctr systemctl start release-edge || fail_unit "systemctl start"
# The filesystem store is the unit's state directory; put the samples in it.
podman cp samples/releases "$ctr:/var/lib/private/release-edge/"
base=http://127.0.0.1:$port
for i in $(seq 1 100); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/readyz") == 200 ]] && break
    ((i < 100)) || fail_unit "/readyz of the unit never answered 200"
    sleep 0.2
done
cmp <(curl -sf -r 100-1123 "$base/releases/v1.1.0/Sample-App-Setup-1.1.0.exe") \
    <(tail -c +101 samples/releases/v1.1.0/Sample-App-Setup-1.1.0.exe | head -c 1024) ||
    fail_unit "ranged download from the unit"
pid=$(in_ctr systemctl show -p MainPID --value release-edge)
status=$(in_ctr cat "/proc/$pid/status")
uid=$(awk '/^Uid:/ {print $2}' <<<"$status")
((uid != 0)) || fail_unit "runs as root"
grep -Eq '^CapEff:[[:space:]]+0+$' <<<"$status" || fail_unit "has capabilities: $(grep CapEff <<<"$status")"
grep -Eq '^NoNewPrivs:[[:space:]]+1$' <<<"$status" || fail_unit "no_new_privs not set"
grep -Eq '^Seccomp:[[:space:]]+2$' <<<"$status" || fail_unit "no seccomp filter"
echo "systemd: ok: the unit runs under systemd: serves a range byte-exact, dynamic uid $uid, no capabilities, no_new_privs, seccomp filter"
in_ctr systemctl stop release-edge
[[ $(in_ctr systemctl show -p Result --value release-edge) == success &&
    $(in_ctr systemctl show -p ExecMainStatus --value release-edge) == 0 ]] || fail_unit "stop did not end in exit 0"
in_ctr journalctl -u release-edge --no-pager -o cat | grep -q 'INFO release_edge: stopped' || fail_unit "no drain in the journal"
echo "systemd: ok: systemctl stop: drained, exit status 0"

# Port 443: refused without the drop-in, served with it and only CAP_NET_BIND_SERVICE.
in_ctr mkdir -p /etc/systemd/system/release-edge.service.d
in_ctr sh -c 'printf "[Service]\nEnvironment=RELEASE_EDGE_LISTEN=0.0.0.0:443\n" >/etc/systemd/system/release-edge.service.d/listen-443.conf'
in_ctr systemctl daemon-reload
in_ctr systemctl start release-edge >/dev/null 2>&1 || true
# Type=exec: the start succeeds, then the process exits 2 (and Restart= tries again).
for i in $(seq 1 50); do
    [[ $(in_ctr systemctl show -p ExecMainStatus --value release-edge) == 2 ]] && break
    ((i < 50)) || fail_unit "port 443 was bound without bind-privileged-port.conf"
    sleep 0.2
done
in_ctr systemctl stop release-edge
in_ctr journalctl -u release-edge --no-pager -o cat | grep -q '0.0.0.0:443: Permission denied' || fail_unit "443 refused for another reason"
podman cp deploy/systemd/release-edge.service.d/bind-privileged-port.conf "$ctr:/etc/systemd/system/release-edge.service.d/"
in_ctr systemctl daemon-reload
in_ctr systemctl start release-edge || fail_unit "start with bind-privileged-port.conf"
for i in $(seq 1 50); do
    in_ctr curl -sf -o /dev/null --max-time 2 http://127.0.0.1:443/healthz && break
    ((i < 50)) || fail_unit "nothing on 443 with bind-privileged-port.conf"
    sleep 0.2
done
pid=$(in_ctr systemctl show -p MainPID --value release-edge)
grep -Eq '^CapEff:[[:space:]]+0+400$' <<<"$(in_ctr cat "/proc/$pid/status")" || fail_unit "capabilities other than CAP_NET_BIND_SERVICE"
echo "systemd: ok: 443 refused without bind-privileged-port.conf; with it, bound holding CAP_NET_BIND_SERVICE alone"
