#!/usr/bin/env bash
# S3 benchmark: /releases/* through release-edge's S3 store against reading the same objects
# straight from the same S3 server, same run.
#
#   benches/s3.sh        # ~1.5 minutes on a 2-core machine, after a one-time tool build
#
# The S3 server is s3s-fs (installed once with `cargo install s3s-fs --features binary` into
# benches/out/tools), serving a temp dir on 127.0.0.1. Two instances of it serve the same
# directory: one with SigV4 authentication (keys made at run time) that release-edge reads
# through aws-sdk-s3 (path-style), and one without, so that wrk can read the same objects
# directly (wrk cannot sign requests). Objects: releases/v1.0.0/small.yml (1 KiB) and big.bin
# (64 MiB). Measured with wrk --latency, direct first, then through release-edge:
#   1. small.yml requests/s and p50            wrk -c$BENCH_SMALL_CONNS
#   2. big.bin MiB/s, whole object             wrk -c$BENCH_BIG_CONNS
# Knobs: BENCH_DURATION=8, BENCH_THREADS=2, BENCH_SMALL_CONNS=32, BENCH_BIG_CONNS=4,
# BENCH_RELEASE_EDGE_BIN. Only 127.0.0.1 is bound or targeted; every run is bounded; the EXIT
# trap stops both servers and removes the temp dir.
set -euo pipefail
: "${BENCH_DURATION:=8}"
: "${BENCH_THREADS:=2}"
: "${BENCH_SMALL_CONNS:=32}"
: "${BENCH_BIG_CONNS:=4}"
: "${BENCH_RELEASE_EDGE_BIN:=}"

cd "$(dirname "$0")/.."
repo=$(pwd)
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk curl; }
s3s=$repo/benches/out/tools/bin/s3s-fs
[[ -x $s3s ]] || cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$repo/benches/out/tools"
bin=${BENCH_RELEASE_EDGE_BIN:-$repo/target/release/release-edge}
[[ -n "$BENCH_RELEASE_EDGE_BIN" ]] || cargo build --release --quiet

source "$repo/benches/lib.sh"

mkdir -p "$tmp/data/bucket/releases/v1.0.0"
head -c 1024 /dev/urandom > "$tmp/data/bucket/releases/v1.0.0/small.yml"
head -c $((64 << 20)) /dev/urandom > "$tmp/data/bucket/releases/v1.0.0/big.bin"
s3_port=$(free_port); auth_port=$(free_port); re_port=$(free_port)
key=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'); secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$s3s" --host 127.0.0.1 --port "$s3_port" "$tmp/data" >"$tmp/s3.log" 2>&1 &
pids+=($!)
"$s3s" --host 127.0.0.1 --port "$auth_port" --access-key "$key" --secret-key "$secret" "$tmp/data" >"$tmp/s3-auth.log" 2>&1 &
pids+=($!)
AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_EC2_METADATA_DISABLED=true \
RELEASE_EDGE_LISTEN=127.0.0.1:$re_port RELEASE_EDGE_LOG__LEVEL=warn RELEASE_EDGE_STORE__KIND=s3 \
RELEASE_EDGE_STORE__BUCKET=bucket RELEASE_EDGE_STORE__ENDPOINT=http://127.0.0.1:$auth_port \
RELEASE_EDGE_STORE__FORCE_PATH_STYLE=true "$bin" serve 2>"$tmp/re.log" &
pids+=($!)
direct=http://127.0.0.1:$s3_port/bucket/releases/v1.0.0
edge=http://127.0.0.1:$re_port/releases/v1.0.0
wait_up "$direct/small.yml"
wait_up "$edge/small.yml"
cmp <(curl -fsS "$direct/big.bin") <(curl -fsS "$edge/big.bin")

measure() { # label url conns
    local out
    wrk -t"$BENCH_THREADS" -c"$3" -d2s "$2" >/dev/null 2>&1 || true
    out=$(wrk -t"$BENCH_THREADS" -c"$3" -d"${BENCH_DURATION}s" --latency "$2")
    local rps mibs p50
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    mibs=$(awk '/Transfer\/sec/ {v=$2; if (v ~ /GB/) {sub(/GB/,"",v); v*=1024} else if (v ~ /MB/) {sub(/MB/,"",v)} else if (v ~ /KB/) {sub(/KB/,"",v); v/=1024}; print v}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    printf '| %s | %s | %s | %s |\n' "$1" "$rps" "$mibs" "$p50"
}
{
echo "| what | requests/s | MiB/s | p50 |"
echo "|---|---:|---:|---:|"
measure "small.yml direct from S3" "$direct/small.yml" "$BENCH_SMALL_CONNS"
measure "small.yml via release-edge" "$edge/small.yml" "$BENCH_SMALL_CONNS"
measure "big.bin direct from S3" "$direct/big.bin" "$BENCH_BIG_CONNS"
measure "big.bin via release-edge" "$edge/big.bin" "$BENCH_BIG_CONNS"
} | tee "$tmp/table.md"
mkdir -p benches/out && cp "$tmp/table.md" benches/out/s3.md
echo "(also in benches/out/s3.md; $(nproc) cores)"
