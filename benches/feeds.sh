#!/usr/bin/env bash
# Update-check benchmark: cached update checks and /latest of release-edge against nginx
# serving the same manifest as a static file, same machine, same run.
#
#   benches/feeds.sh        # ~1 minute on a 2-core machine
#
# release-edge serves the repository's sample releases (samples/); nginx serves
# samples/releases/latest/latest-linux.yml as a static file (sendfile on, access_log off,
# worker_processes auto, no open_file_cache). After a warm-up (the manifest is then in
# release-edge's memory cache), each is measured in turn with wrk --latency:
#   1. nginx       GET /releases/latest/latest-linux.yml                 (static file)
#   2. YAML        GET /update/linux/x64/1.0.0/latest-linux.yml         (electron-updater)
#   3. JSON        GET /update/darwin/arm64/1.0.0  Accept: application/json  (Squirrel.Mac, Tauri)
#   4. /latest     GET /latest/mac/arm64                                 (302)
# Knobs: BENCH_DURATION=10 seconds per run, BENCH_CONNS=256 connections, BENCH_THREADS=2,
# BENCH_RELEASE_EDGE_BIN to benchmark a given binary instead of building target/release.
# Only 127.0.0.1 is bound or targeted; every run is bounded; the EXIT trap stops both servers.
set -euo pipefail
: "${BENCH_DURATION:=10}"
: "${BENCH_CONNS:=256}"
: "${BENCH_THREADS:=2}"
: "${BENCH_RELEASE_EDGE_BIN:=}"

cd "$(dirname "$0")/.."
repo=$(pwd)
for tool in nginx wrk curl; do
    if ! command -v "$tool" >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk curl
        break
    fi
done
bin=${BENCH_RELEASE_EDGE_BIN:-$repo/target/release/release-edge}
[[ -n "$BENCH_RELEASE_EDGE_BIN" ]] || cargo build --release --quiet
source "$repo/benches/lib.sh"

re_port=$(free_port); ngx_port=$(free_port)
RELEASE_EDGE_LISTEN=127.0.0.1:$re_port RELEASE_EDGE_PUBLIC_URL=http://127.0.0.1:$re_port \
RELEASE_EDGE_STORE__ROOT=$repo/samples RELEASE_EDGE_LOG__LEVEL=warn "$bin" serve 2>"$tmp/re.log" &
pids+=($!)
cat > "$tmp/nginx.conf" <<CONF
worker_processes auto; daemon off; pid $tmp/nginx.pid; error_log $tmp/nginx.err;
events { worker_connections 4096; }
http { access_log off; sendfile on; tcp_nopush on; default_type application/octet-stream;
  server { listen 127.0.0.1:$ngx_port; root $repo/samples; } }
CONF
nginx -c "$tmp/nginx.conf" &
pids+=($!)
wait_up "http://127.0.0.1:$re_port/healthz"
wait_up "http://127.0.0.1:$ngx_port/releases/latest/latest-linux.yml"

run() { # name url [header]
    local args=(-t"$BENCH_THREADS" -c"$BENCH_CONNS" -d"${BENCH_DURATION}s" --latency)
    [[ $# -ge 3 ]] && args+=(-H "$3")
    wrk "${args[@]}" -d2s "$2" >/dev/null 2>&1 || true   # warm-up
    local out; out=$(wrk "${args[@]}" "$2")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    printf '| %s | %s | %s | %s |\n' "$1" "$rps" "$p50" "$p99"
    echo "$rps" > "$tmp/$1.rps"
}
re=http://127.0.0.1:$re_port; ngx=http://127.0.0.1:$ngx_port
curl -fsS "$re/update/linux/x64/1.0.0/latest-linux.yml" | grep -q "^version:"
[[ $(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' "$re/update/darwin/arm64/1.0.0") == 200 ]]
[[ $(curl -s -o /dev/null -w '%{http_code}' "$re/latest/mac/arm64") == 302 ]]

{
echo "| what | requests/s | p50 | p99 |"
echo "|---|---:|---:|---:|"
run nginx "$ngx/releases/latest/latest-linux.yml"
run yaml "$re/update/linux/x64/1.0.0/latest-linux.yml"
run json "$re/update/darwin/arm64/1.0.0" "Accept: application/json"
run latest "$re/latest/mac/arm64"
} | tee "$tmp/table.md"
ngx_rps=$(cat "$tmp/nginx.rps")
for what in yaml json latest; do
    awk -v a="$(cat "$tmp/$what.rps")" -v b="$ngx_rps" -v w="$what" 'BEGIN { printf "%s / nginx: %.2fx\n", w, a / b }'
done | tee -a "$tmp/table.md"
mkdir -p benches/out && cp "$tmp/table.md" benches/out/feeds.md
echo "(also in benches/out/feeds.md; $(nproc) cores, wrk -t$BENCH_THREADS -c$BENCH_CONNS -d${BENCH_DURATION}s)"
