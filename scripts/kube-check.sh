#!/usr/bin/env bash
# Checks deploy/kubernetes: every overlay rendered with `kubectl kustomize` and validated with
# `kubernetes-validate --strict` (bundled schemas, offline) for Kubernetes 1.30 (the first
# with the preStop `sleep` action on by default) and 1.37; the ServiceMonitor (a CRD, which
# has no bundled schema) checked against the Service it selects; each TOML of the ConfigMaps
# accepted by `release-edge check-config`; `yamllint`; then the fs-demo overlay's ConfigMap
# and Deployment run with `podman kube play` on the image of scripts/build-image.sh,
# answering on a port forwarded to 127.0.0.1.
#   scripts/kube-check.sh      (after scripts/container-check.sh or build-image.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
KUBE_VERSIONS=(1.30.0 1.37.0)
OVERLAYS=(fs-demo s3)

fail() {
    echo "kube-check: FAIL: $*" >&2
    exit 1
}
pass() { echo "kubernetes: ok: $*"; }

command -v kubectl >/dev/null 2>&1 || fail "kubectl is not installed (it comes with this machine's image)"
python3 -c 'import kubernetes_validate, yamllint' 2>/dev/null ||
    pip install --quiet --disable-pip-version-check kubernetes-validate yamllint
work=$(mktemp -d)
pod=
cleanup() {
    [[ -n $pod ]] && podman kube down "$work/play.yaml" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

yamllint --strict -c deploy/yamllint.yaml deploy/kubernetes deploy/yamllint.yaml || fail "yamllint"
pass "yamllint --strict clean on deploy/kubernetes"

binary=target/x86_64-unknown-linux-gnu/release/release-edge
[[ -x $binary ]] || binary=target/debug/release-edge
[[ -x $binary ]] || fail "no release-edge binary built yet"

for overlay in "${OVERLAYS[@]}"; do
    rendered=$work/$overlay.yaml
    kubectl kustomize "deploy/kubernetes/overlays/$overlay" >"$rendered" || fail "kustomize $overlay"
    for version in "${KUBE_VERSIONS[@]}"; do
        kubernetes-validate --strict -k "$version" - <"$rendered" >"$work/validate.log" 2>&1 || {
            cat "$work/validate.log"
            fail "$overlay does not validate against Kubernetes $version"
        }
        # Anything but "passed", and the one CRD without a bundled schema, is a failure.
        if grep -v -e '^INFO - passed for resource' \
            -e "^WARN - Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1" \
            "$work/validate.log"; then
            fail "$overlay: unexpected output from kubernetes-validate $version"
        fi
        count=$(grep -c '^INFO - passed' "$work/validate.log")
        pass "$overlay: $count resources valid (--strict) for Kubernetes $version"
    done
    # The manifest's promises, read from what kustomize rendered.
    python3 - "$rendered" "$work/$overlay" <<'PY' || fail "$overlay: rendered manifests"
import sys, yaml, pathlib
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = pathlib.Path(sys.argv[2]); out.mkdir()
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
dep = by_kind["Deployment"][0]
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
def check(cond, what):
    if not cond:
        sys.exit(f"{what}")
check(pod["securityContext"]["runAsNonRoot"] is True, "runAsNonRoot")
check(c["securityContext"]["readOnlyRootFilesystem"] is True, "readOnlyRootFilesystem")
check(c["securityContext"]["capabilities"]["drop"] == ["ALL"], "drop ALL capabilities")
check(c["securityContext"]["allowPrivilegeEscalation"] is False, "allowPrivilegeEscalation")
check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness on /healthz")
check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness on /readyz")
check("requests" in c["resources"] and "limits" in c["resources"], "resources")
# terminationGracePeriodSeconds above preStop + shutdown_grace of the mounted TOML.
import tomllib
cm = by_kind["ConfigMap"][0]
conf = tomllib.loads(cm["data"]["release-edge.toml"])
grace = conf["server"]["shutdown_grace"]
check(grace.endswith("s") and grace[:-1].isdigit(), f"shutdown_grace {grace!r} in seconds")
pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
check(pod["terminationGracePeriodSeconds"] > pre_stop + int(grace[:-1]),
      f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} <= {pre_stop} + {grace}")
check(conf["listen"].startswith("0.0.0.0:"), "listen on every interface of the pod")
vol = [v for v in pod["volumes"] if v["name"] == "config"][0]
check(vol["configMap"]["name"] == cm["metadata"]["name"], "the ConfigMap is the one mounted")
secrets = {e["name"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})}
check(secrets >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "RELEASE_EDGE_ADMIN_TOKENS"},
      f"secrets referenced: {secrets}")
check(all(e["valueFrom"]["secretKeyRef"].get("optional") for e in c["env"] if "valueFrom" in e),
      "every secret optional")
svc = by_kind["Service"][0]
labels = dep["spec"]["template"]["metadata"]["labels"]
check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selects the pods")
pdb = by_kind["PodDisruptionBudget"][0]
check(all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()), "PDB selects the pods")
hpa = by_kind["HorizontalPodAutoscaler"][0]
check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "HPA scales the Deployment")
check(hpa["spec"]["minReplicas"] >= 2 and pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"],
      "HPA keeps at least 2 replicas, so the PDB lets a node drain")
for sm in by_kind.get("ServiceMonitor", []):
    sel = sm["spec"]["selector"]["matchLabels"]
    check(all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor selects the Service")
    ports = {p["name"] for p in svc["spec"]["ports"]}
    check(all(e["port"] in ports and e["path"] == "/metrics" for e in sm["spec"]["endpoints"]),
          "ServiceMonitor scrapes /metrics on a port of the Service")
(out / "release-edge.toml").write_text(cm["data"]["release-edge.toml"])
print(f"{len(docs)} resources: " + ", ".join(sorted(by_kind)))
PY
    # The ConfigMap's TOML is one the server accepts (the image's samples stand in for the fs
    # root; an S3 store is not contacted by check-config).
    RELEASE_EDGE_STORE__ROOT=samples "$binary" check-config --config "$work/$overlay/release-edge.toml" >/dev/null ||
        fail "$overlay: release-edge check-config refuses the ConfigMap's TOML"
    pass "$overlay: probes, security context, grace periods, selectors, secrets; TOML accepted by check-config"
done

# --- podman kube play of the fs-demo Deployment -------------------------------------------
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
podman image exists "localhost/release-edge:$version" || scripts/build-image.sh
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The ConfigMap and the Deployment as rendered; the one change is a hostPort on 127.0.0.1,
# what `kubectl port-forward` is to a cluster.
python3 - "$work/fs-demo.yaml" "$port" >"$work/play.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] in ("ConfigMap", "Deployment")]
for d in docs:
    d["metadata"].pop("namespace", None)
    if d["kind"] == "Deployment":
        for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]:
            p["hostPort"] = int(sys.argv[2])
            p["hostIP"] = "127.0.0.1"
yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
PY
podman kube down "$work/play.yaml" >/dev/null 2>&1 || true
pod=started
podman kube play "$work/play.yaml" >"$work/play.log" 2>&1 || {
    cat "$work/play.log"
    fail "podman kube play"
}
base=http://127.0.0.1:$port
for i in $(seq 1 150); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/readyz") == 200 ]] && break
    ((i < 150)) || {
        podman pod ps
        podman logs "$(podman ps -a --filter name=release-edge --format '{{.Names}}' | grep -v infra | head -n 1)" || true
        fail "the kube-played pod did not answer /readyz within 30 s"
    }
    sleep 0.2
done
curl -sf -D "$work/h" -o "$work/feed" "$base/update/win32/x64/1.0.0/latest.yml" || fail "feed through kube play"
grep -q 'https://dl.example.com/releases/v1.1.0/' "$work/feed" || fail "the ConfigMap's public_url is not in the feed"
curl -sf -r 0-1023 -o "$work/part" "$base/releases/v1.1.0/Sample-App-Setup-1.1.0.exe" || fail "range through kube play"
cmp "$work/part" <(head -c 1024 samples/releases/v1.1.0/Sample-App-Setup-1.1.0.exe) || fail "ranged bytes differ"
container=$(podman ps --filter name=release-edge --format '{{.Names}}' | grep -v infra | head -n 1)
[[ $(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$container") == true ]] || fail "root filesystem not read-only"
user=$(podman top "$container" huser | tail -n 1 | tr -d ' ')
[[ $user == 65532 ]] || fail "the pod runs as '$user'"
pass "podman kube play of fs-demo: /readyz, the feed with the ConfigMap's public_url, a range byte-exact; read-only root, uid 65532"
