#!/usr/bin/env bash
# Sourced by the container scripts: installs podman (Debian's podman, runc, catatonit) when it
# is missing and points it at a containers.conf made for this kind of machine. The sandbox
# lacks CAP_SYS_RESOURCE and has hybrid cgroups, so podman's defaults fail:
#   - runtime = "runc" (crun's cgroup handling fails on the hybrid hierarchy);
#   - default_ulimits explicit and within the hard limits: podman otherwise asks for
#     nofile=1048576 and its nproc default, which only CAP_SYS_RESOURCE may raise to;
#   - cgroupfs and a file event log: there is no systemd to talk to.
# Exports CONTAINERS_CONF.

_podman_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_podman_missing=()
command -v podman >/dev/null 2>&1 || _podman_missing+=(podman)
command -v runc >/dev/null 2>&1 || _podman_missing+=(runc)
[[ -x /usr/bin/catatonit || -x /usr/libexec/podman/catatonit ]] || _podman_missing+=(catatonit)
if ((${#_podman_missing[@]})); then
    echo "installing: ${_podman_missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${_podman_missing[@]}" >/dev/null
fi

_podman_nofile=$(ulimit -Hn)
if [[ $_podman_nofile == unlimited || $_podman_nofile -gt 65536 ]]; then _podman_nofile=65536; fi
mkdir -p "$_podman_repo/target/podman"
cat >"$_podman_repo/target/podman/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=${_podman_nofile}:${_podman_nofile}", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$_podman_repo/target/podman/containers.conf"
unset _podman_missing _podman_nofile _podman_repo
