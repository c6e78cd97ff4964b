#!/usr/bin/env bash
# Load benchmark: release-edge against nginx, same files, same machine, same run.
#
#   benches/load.sh            # the whole thing, ~2 minutes on a 2-core machine
#
# What it does
#   * installs nginx and wrk with apt-get when missing (needs root), builds release-edge
#     with `cargo build --release` (skipped when BENCH_RELEASE_EDGE_BIN is set);
#   * creates a temp dir (mktemp -d) with releases/v1.0.0/{small.yml 1 KiB, big.bin 256 MiB,
#     huge.bin 1 GiB}. big.bin is 256 MiB from /dev/urandom; huge.bin is big.bin four times
#     over (real, incompressible bytes, made in about a second instead of five);
#   * starts release-edge (log level warn) and nginx (generated nginx.conf: sendfile on,
#     tcp_nopush on, access_log off, worker_processes auto, no open_file_cache) on two free
#     ports of 127.0.0.1, both serving the temp dir, so /releases/v1.0.0/big.bin works on both;
#   * checks both answer the same bytes (200 for the whole small file, 206 for aligned and
#     unaligned 1 MiB ranges), warms up, then measures each server in turn (the order
#     alternates from one test to the next), all with wrk -t$BENCH_THREADS:
#       1. small.yml requests/s                      wrk -c$BENCH_SMALL_CONNS -d$BENCH_DURATION
#       2. big.bin MiB/s, whole file                 wrk -c$BENCH_BIG_CONNS   -d$BENCH_DURATION
#       3. random 1 MiB ranges of big.bin, req/s and MiB/s (benches/lua/range.lua)
#                                                    wrk -c$BENCH_RANGE_CONNS -d$BENCH_DURATION
#       4. peak RSS while $BENCH_RSS_CONNS clients download huge.bin (wrk -c200 -d15s):
#          release-edge VmHWM (reset just before the test via /proc/PID/clear_refs) and the
#          max of VmRSS sampled every 100 ms; nginx: max of the summed VmRSS of master and
#          workers, sampled the same way;
#   * prints a table with the ratios release-edge/nginx and writes it to
#     benches/out/results.md (raw wrk output in benches/out/raw/).
#
# Knobs (environment variables; defaults keep the run under ~3 minutes on 2 cores)
#   BENCH_DURATION=10       seconds of each wrk run of tests 1-3
#   BENCH_THREADS=2         wrk threads (-t) for every run
#   BENCH_SMALL_CONNS=64    connections, test 1
#   BENCH_BIG_CONNS=4       connections, test 2
#   BENCH_RANGE_CONNS=8     connections, test 3
#   BENCH_RANGE_LEN=1048576 bytes per range, test 3
#   BENCH_RANGE_ALIGNED=1   1: ranges start on multiples of BENCH_RANGE_LEN; 0: any offset
#   BENCH_RSS_CONNS=200     concurrent downloads of huge.bin, test 4
#   BENCH_RSS_DURATION=15   seconds of test 4 (per server)
#   BENCH_WARMUP=2          seconds of wrk warm-up per server before test 1
#   BENCH_ROUNDS=1          repeat tests 1-3 this many times and report the median
#   BENCH_TMPDIR=${TMPDIR:-/tmp}   where the temp dir (≈1.3 GiB) is created
#   BENCH_RELEASE_EDGE_BIN=       benchmark this binary instead of building ./target/release
#
# Only 127.0.0.1 is ever bound or targeted. Every wait and run is bounded in time. The
# trap on EXIT stops both servers and the samplers and removes the temp dir.
set -euo pipefail

: "${BENCH_DURATION:=10}"
: "${BENCH_THREADS:=2}"
: "${BENCH_SMALL_CONNS:=64}"
: "${BENCH_BIG_CONNS:=4}"
: "${BENCH_RANGE_CONNS:=8}"
: "${BENCH_RANGE_LEN:=1048576}"
: "${BENCH_RANGE_ALIGNED:=1}"
: "${BENCH_RSS_CONNS:=200}"
: "${BENCH_RSS_DURATION:=15}"
: "${BENCH_WARMUP:=2}"
: "${BENCH_ROUNDS:=1}"
: "${BENCH_TMPDIR:=${TMPDIR:-/tmp}}"
: "${BENCH_RELEASE_EDGE_BIN:=}"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCHES="$ROOT/benches"
OUT="$BENCHES/out"
RSS_TARGET_MIB=64
MIB=1048576
BIG_SIZE=$((256 * MIB))
HUGE_SIZE=$((1024 * MIB))
FILE_PATH=/releases/v1.0.0

log() { printf '[load.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
    printf '[load.sh] ERROR: %s\n' "$*" >&2
    exit 1
}

# --- cleanup ------------------------------------------------------------------------------
TMP=""
RE_PID=""
NGINX_PID=""
SAMPLER_PIDS=()
POLICY_RC_CREATED=""

stop_pid() { # pid: TERM, up to 5 s, then KILL
    local pid=$1 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${SAMPLER_PIDS[@]}"; do stop_pid "$pid"; done
    stop_pid "$RE_PID"
    stop_pid "$NGINX_PID"
    [[ -n $POLICY_RC_CREATED ]] && rm -f /usr/sbin/policy-rc.d
    [[ -n $TMP && -d $TMP ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- prerequisites ------------------------------------------------------------------------
install_missing() {
    local missing=()
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    ((${#missing[@]} == 0)) && return 0
    [[ $EUID -eq 0 ]] || die "missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
    log "installing ${missing[*]} with apt-get"
    # Keep the package's postinst from starting a system nginx on port 80.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    timeout 600 apt-get update -qq || log "apt-get update failed; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >&2
    if [[ -n $POLICY_RC_CREATED ]]; then
        rm -f /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=""
    fi
}
install_missing
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PREBUILT=$BENCH_RELEASE_EDGE_BIN
if [[ -z $BENCH_RELEASE_EDGE_BIN ]]; then
    log "cargo build --release (waits if another build holds the target dir lock)"
    (cd "$ROOT" && timeout 1800 cargo build --release) >&2 || die "cargo build --release failed"
    BENCH_RELEASE_EDGE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/release-edge"
    [[ $BENCH_RELEASE_EDGE_BIN = /* ]] || BENCH_RELEASE_EDGE_BIN="$ROOT/$BENCH_RELEASE_EDGE_BIN"
fi
[[ -x $BENCH_RELEASE_EDGE_BIN ]] || die "no executable at $BENCH_RELEASE_EDGE_BIN"

# Other CPU load makes the numbers noisy; say so in the results instead of guessing later.
count_busy() { ps -eo comm= | grep -cE '^(cargo|rustc|cc|cc1|cc1plus|ld|rust-lld|clang)$' || true; }
BUSY=$(count_busy)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
((BUSY == 0)) || log "WARNING: $BUSY compiler processes running; numbers will be noisy"

# --- data -------------------------------------------------------------------------------
mkdir -p "$BENCH_TMPDIR"
TMP=$(mktemp -d "$BENCH_TMPDIR/release-edge-bench.XXXXXX")
chmod 755 "$TMP"
DATA="$TMP/data"
DIR="$DATA/releases/v1.0.0"
mkdir -p "$DIR" "$TMP/nginx/tmp" "$TMP/lua"
log "creating data in $DATA"
{
    echo "version: 1.0.0"
    echo "path: App-1.0.0.dmg"
    echo "sha512: $(head -c 64 /dev/urandom | base64 -w0)"
    echo "releaseDate: '2025-01-01T00:00:00.000Z'"
    echo "files:"
    for i in $(seq 1 12); do
        echo "  - url: App-1.0.0-part$i.bin"
        echo "    sha512: $(head -c 48 /dev/urandom | base64 -w0)"
    done
} >"$DIR/small.yml"
truncate -s 1024 "$DIR/small.yml" # exactly 1 KiB (a pipe into head -c would SIGPIPE under pipefail)
head -c "$BIG_SIZE" /dev/urandom >"$DIR/big.bin"
cat "$DIR/big.bin" "$DIR/big.bin" "$DIR/big.bin" "$DIR/big.bin" >"$DIR/huge.bin"
sync # no writeback of 1.3 GiB of dirty pages during the measurements
chmod -R a+rX "$DATA"
DATA_READY=$(date +%s.%N)
[[ $(stat -c %s "$DIR/big.bin") -eq $BIG_SIZE && $(stat -c %s "$DIR/huge.bin") -eq $HUGE_SIZE ]] ||
    die "data files have the wrong size (disk full?)"

# --- ports ------------------------------------------------------------------------------
port_in_use() { [[ -n $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]; }
free_port() { # a port of 127.0.0.1 nobody listens on, not in $1
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 40000))
        [[ $p == "${1:-}" ]] && continue
        port_in_use "$p" && continue
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
        echo "$p"
        return 0
    done
    die "no free port found"
}
RE_PORT=$(free_port)
NGINX_PORT=$(free_port "$RE_PORT")
RE_URL="http://127.0.0.1:$RE_PORT"
NGINX_URL="http://127.0.0.1:$NGINX_PORT"

# --- servers ----------------------------------------------------------------------------
wait_http() { # name pid url logfile: up to 20 s for a 200 from url, else fail loudly
    local name=$1 pid=$2 url=$3 logfile=$4 i
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logfile" >&2 || true
            die "$name exited during startup (log above)"
        fi
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -n 30 "$logfile" >&2 || true
    die "$name did not answer $url within 20 s"
}

log "starting release-edge on $RE_URL"
# The server reads every RELEASE_EDGE_* variable as config: pass only ours.
unset_env=(-u RUST_LOG)
for v in $(compgen -e | grep '^RELEASE_EDGE_' || true); do unset_env+=(-u "$v"); done
env "${unset_env[@]}" \
    RELEASE_EDGE_LISTEN="127.0.0.1:$RE_PORT" \
    RELEASE_EDGE_PUBLIC_URL="$RE_URL" \
    RELEASE_EDGE_STORE__ROOT="$DATA" \
    RELEASE_EDGE_LOG__LEVEL=warn \
    RELEASE_EDGE_SERVER__SHUTDOWN_GRACE=2s \
    "$BENCH_RELEASE_EDGE_BIN" serve --config "$ROOT/config/release-edge.toml" \
    >"$TMP/release-edge.log" 2>&1 &
RE_PID=$!

log "starting nginx on $NGINX_URL"
NGINX_USER=""
[[ $EUID -eq 0 ]] && NGINX_USER="user $(id -un) $(id -gn);"
cat >"$TMP/nginx/nginx.conf" <<EOF
# Generated by benches/load.sh.
daemon off;
master_process on;
worker_processes auto;
$NGINX_USER
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    types { text/yaml yml; }
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $DATA;
        location / { }
    }
}
EOF
"$NGINX" -t -q -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" ||
    die "nginx -t refused the generated config ($TMP/nginx/nginx.conf)"
"$NGINX" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx/stdout.log" 2>&1 &
NGINX_PID=$!

wait_http release-edge "$RE_PID" "$RE_URL$FILE_PATH/small.yml" "$TMP/release-edge.log"
wait_http nginx "$NGINX_PID" "$NGINX_URL$FILE_PATH/small.yml" "$TMP/nginx/error.log"
log "both servers answer"

# --- correctness checks -----------------------------------------------------------------
check_range() { # first last: both servers answer 206 with exactly these bytes of big.bin
    local first=$1 last=$2 len=$(($2 - $1 + 1)) want got code name url
    want=$(dd if="$DIR/big.bin" iflag=skip_bytes,count_bytes skip="$first" count="$len" bs=64K status=none |
        sha256sum | cut -d' ' -f1)
    for name in release-edge nginx; do
        [[ $name == nginx ]] && url=$NGINX_URL || url=$RE_URL
        code=$(curl -s --max-time 20 -o "$TMP/range.out" -w '%{http_code}' \
            -H "Range: bytes=$first-$last" "$url$FILE_PATH/big.bin")
        [[ $code == 206 ]] || die "$name answered $code, not 206, to Range: bytes=$first-$last"
        got=$(sha256sum <"$TMP/range.out" | cut -d' ' -f1)
        [[ $got == "$want" ]] || die "$name sent the wrong bytes for Range: bytes=$first-$last"
    done
}
for url in "$RE_URL" "$NGINX_URL"; do
    curl -fsS --max-time 10 -o "$TMP/small.out" "$url$FILE_PATH/small.yml"
    cmp -s "$TMP/small.out" "$DIR/small.yml" || die "$url sent the wrong small.yml"
done
# The first open of a large file hashes it for its ETag (src/store/fs.rs), and a file changed
# less than 2 s ago is hashed on every open (RACY_WINDOW): wait that out, then time the hash.
sleep "$(awk -v r="$DATA_READY" -v n="$(date +%s.%N)" 'BEGIN { d = 2.2 - (n - r); print (d > 0 ? d : 0) }')"
check_range $((5 * MIB)) $((6 * MIB - 1))
check_range 123457 $((123457 + MIB - 1))
RE_FIRST_HUGE=$(curl -fsS --max-time 60 -o /dev/null -I -w '%{time_total}' "$RE_URL$FILE_PATH/huge.bin")
RE_SECOND_HUGE=$(curl -fsS --max-time 60 -o /dev/null -I -w '%{time_total}' "$RE_URL$FILE_PATH/huge.bin")
NGINX_FIRST_HUGE=$(curl -fsS --max-time 60 -o /dev/null -I -w '%{time_total}' "$NGINX_URL$FILE_PATH/huge.bin")
log "checks passed (200 small.yml, 206 aligned and unaligned 1 MiB ranges, same bytes)"

# --- measuring helpers ------------------------------------------------------------------
mkdir -p "$OUT/raw"
rm -f "$OUT"/raw/*.txt
declare -A R=()  # R[metric.server] = value (median over rounds where it applies)
declare -A E=()  # E[test.server] = "errors" text for the notes

url_of() { [[ $1 == nginx ]] && echo "$NGINX_URL" || echo "$RE_URL"; }

# run_wrk label server conns duration script path [script args...]
# Sets W_RPS W_MIBS W_ERR W_P99MS W_AVG (bytes per response).
run_wrk() {
    local label=$1 server=$2 conns=$3 dur=$4 script=$5 path=$6
    shift 6
    local raw="$OUT/raw/$label.$server.txt" line
    timeout $((dur + 60)) wrk -t"$BENCH_THREADS" -c"$conns" -d"${dur}s" --timeout 30s \
        -s "$script" "$(url_of "$server")$path" ${1:+--} "$@" >"$raw" 2>&1 ||
        { cat "$raw" >&2; die "wrk $label against $server failed"; }
    line=$(grep '^WRKRESULT' "$raw") || { cat "$raw" >&2; die "no result from wrk $label/$server"; }
    read -r W_RPS W_MIBS W_ERR W_P99MS W_AVG < <(awk -v mib=$MIB '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        s = v["duration_us"] / 1e6
        err = v["connect"] + v["read"] + v["write"] + v["status"] + v["timeout"]
        printf "%.1f %.1f %d %.2f %.0f\n", v["requests"] / s, v["bytes"] / s / mib, err,
            v["p99_us"] / 1000, (v["requests"] > 0 ? v["bytes"] / v["requests"] : 0)
    }' <<<"$line")
    if ((W_ERR > 0)); then
        E[$label.$server]="$W_ERR wrk errors ($(sed 's/.*connect=/connect=/; s/ p50_us.*//' <<<"$line"))"
    fi
    log "$(printf '%-14s %-12s %10s req/s %9s MiB/s  p99 %7s ms  errors %s' \
        "$label" "$server" "$W_RPS" "$W_MIBS" "$W_P99MS" "$W_ERR")"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print "n/a" } else if (NR % 2) { print a[(NR + 1) / 2] }
    else { printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 } }'; }

ORDER_FLIP=0
ORDER=""
next_order() { # sets ORDER; which server goes first alternates from one test to the next
    if ((ORDER_FLIP)); then ORDER="nginx release-edge"; else ORDER="release-edge nginx"; fi
    ORDER_FLIP=$((1 - ORDER_FLIP))
}

# --- tests 1-3 ----------------------------------------------------------------------------
REPORT_LUA="$BENCHES/lua/report.lua"
RANGE_LUA="$BENCHES/lua/range.lua"
if ((BENCH_WARMUP > 0)); then
    log "warm-up: ${BENCH_WARMUP}s per server"
    for s in release-edge nginx; do
        run_wrk warmup "$s" "$BENCH_SMALL_CONNS" "$BENCH_WARMUP" "$REPORT_LUA" "$FILE_PATH/small.yml"
        run_wrk warmup-big "$s" "$BENCH_BIG_CONNS" 1 "$REPORT_LUA" "$FILE_PATH/big.bin"
    done
fi

declare -A ACC=()
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    ((BENCH_ROUNDS == 1)) || log "round $round of $BENCH_ROUNDS"
    sfx=""
    ((BENCH_ROUNDS == 1)) || sfx=".r$round"
    next_order
    for s in $ORDER; do
        run_wrk "small$sfx" "$s" "$BENCH_SMALL_CONNS" "$BENCH_DURATION" "$REPORT_LUA" "$FILE_PATH/small.yml"
        ACC[small_rps.$s]+=" $W_RPS"
        ACC[small_p99.$s]+=" $W_P99MS"
    done
    next_order
    for s in $ORDER; do
        run_wrk "big$sfx" "$s" "$BENCH_BIG_CONNS" "$BENCH_DURATION" "$REPORT_LUA" "$FILE_PATH/big.bin"
        ACC[big_mibs.$s]+=" $W_MIBS"
    done
    next_order
    for s in $ORDER; do
        run_wrk "range$sfx" "$s" "$BENCH_RANGE_CONNS" "$BENCH_DURATION" "$RANGE_LUA" "$FILE_PATH/big.bin" \
            "$BIG_SIZE" "$BENCH_RANGE_LEN" "$BENCH_RANGE_ALIGNED"
        ACC[range_rps.$s]+=" $W_RPS"
        ACC[range_mibs.$s]+=" $W_MIBS"
        # A full 256 MiB answer instead of a 206 would show as a huge average.
        awk -v a="$W_AVG" -v l="$BENCH_RANGE_LEN" 'BEGIN { exit !(a < l + 4096) }' ||
            die "$s: ${W_AVG} bytes per range response, expected about $BENCH_RANGE_LEN"
    done
done
for k in "${!ACC[@]}"; do R[$k]=$(median <<<"${ACC[$k]}"); done

# --- test 4: memory under 200 concurrent large downloads ----------------------------------
proc_field() { # pid field -> value (kB for Vm*), empty when gone
    local k v rest
    [[ -r /proc/$1/status ]] || return 0
    while read -r k v rest; do
        if [[ $k == "$2:" ]]; then
            echo "$v"
            return 0
        fi
    done <"/proc/$1/status" 2>/dev/null || true
    return 0
}

# sampler outfile deadline_s pid...: every 100 ms, sum VmRSS (and Threads) over the pids,
# keep the maxima in outfile as "max_rss_kib max_threads samples".
sampler() {
    local out=$1 deadline=$(($(date +%s) + $2)) max=0 maxt=0 n=0 sum threads pid k v rest
    shift 2
    while (($(date +%s) < deadline)); do
        sum=0
        threads=0
        for pid in "$@"; do
            [[ -r /proc/$pid/status ]] || continue
            while read -r k v rest; do
                case $k in
                    VmRSS:) sum=$((sum + v)) ;;
                    Threads:) threads=$((threads + v)) ;;
                esac
            done <"/proc/$pid/status" 2>/dev/null || true
        done
        n=$((n + 1))
        ((sum > max)) && max=$sum
        ((threads > maxt)) && maxt=$threads
        echo "$max $maxt $n" >"$out.tmp" && mv -f "$out.tmp" "$out"
        sleep 0.1
    done
}

rss_test() { # server: runs test 4 against one server
    local s=$1 pids=() pid spid hwm=0 base=0 v rmax tmax
    if [[ $s == nginx ]]; then
        pids=("$NGINX_PID")
        while read -r pid; do pids+=("$pid"); done < <(pgrep -P "$NGINX_PID" || true)
    else
        pids=("$RE_PID")
    fi
    for pid in "${pids[@]}"; do
        v=$(proc_field "$pid" VmRSS)
        base=$((base + ${v:-0}))
        # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
        echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
    done
    sampler "$TMP/rss.$s" $((BENCH_RSS_DURATION + 60)) "${pids[@]}" &
    spid=$!
    SAMPLER_PIDS+=("$spid")
    run_wrk huge-200 "$s" "$BENCH_RSS_CONNS" "$BENCH_RSS_DURATION" "$REPORT_LUA" "$FILE_PATH/huge.bin"
    sleep 0.3
    for pid in "${pids[@]}"; do
        v=$(proc_field "$pid" VmHWM)
        hwm=$((hwm + ${v:-0}))
    done
    stop_pid "$spid"
    read -r rmax tmax _ <"$TMP/rss.$s" || die "no RSS samples for $s"
    R[rss_max.$s]=$rmax
    R[threads_max.$s]=$tmax
    R[rss_hwm.$s]=$hwm
    R[rss_base.$s]=$base
    R[huge_mibs.$s]=$W_MIBS
    # Let connections close before the other server's turn.
    sleep 1
}
log "test 4: $BENCH_RSS_CONNS concurrent downloads of huge.bin, ${BENCH_RSS_DURATION}s per server"
next_order
for s in $ORDER; do rss_test "$s"; done

# --- report -----------------------------------------------------------------------------
kib2mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
below() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { exit !(b > 0 && a / b < t) }'; }

ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5"); } # metric|release-edge|nginx|ratio|note
tput_row() { # metric key
    local a=${R[$2.release-edge]} b=${R[$2.nginx]} note=""
    below "$a" "$b" 0.8 && note="below 0.8x nginx"
    row "$1" "$a" "$b" "$(ratio "$a" "$b")" "$note"
}
tput_row "small.yml requests/s (c$BENCH_SMALL_CONNS)" small_rps
row "small.yml p99 latency ms (c$BENCH_SMALL_CONNS)" "${R[small_p99.release-edge]}" "${R[small_p99.nginx]}" \
    "$(ratio "${R[small_p99.release-edge]}" "${R[small_p99.nginx]}")" "lower is better"
tput_row "big.bin 256 MiB MiB/s (c$BENCH_BIG_CONNS)" big_mibs
tput_row "1 MiB ranges requests/s (c$BENCH_RANGE_CONNS)" range_rps
tput_row "1 MiB ranges MiB/s (c$BENCH_RANGE_CONNS)" range_mibs
tput_row "huge.bin MiB/s, $BENCH_RSS_CONNS clients (c$BENCH_RSS_CONNS)" huge_mibs
re_hwm=$(kib2mib "${R[rss_hwm.release-edge]}")
re_max=$(kib2mib "${R[rss_max.release-edge]}")
ng_max=$(kib2mib "${R[rss_max.nginx]}")
note="target ${RSS_TARGET_MIB} MiB: "
awk -v a="$re_hwm" -v t=$RSS_TARGET_MIB 'BEGIN { exit !(a > t) }' && note+="OVER" || note+="ok"
row "peak RSS MiB, VmHWM ($BENCH_RSS_CONNS x huge.bin)" "$re_hwm" "$(kib2mib "${R[rss_hwm.nginx]}")" \
    "$(ratio "$re_hwm" "$(kib2mib "${R[rss_hwm.nginx]}")")" "$note; nginx: sum over processes"
row "peak RSS MiB, sampled 100 ms" "$re_max" "$ng_max" "$(ratio "$re_max" "$ng_max")" \
    "nginx: master+workers"
row "RSS MiB before test 4" "$(kib2mib "${R[rss_base.release-edge]}")" "$(kib2mib "${R[rss_base.nginx]}")" \
    "$(ratio "${R[rss_base.release-edge]}" "${R[rss_base.nginx]}")" ""
row "max threads during test 4" "${R[threads_max.release-edge]}" "${R[threads_max.nginx]}" "" \
    "nginx: summed over processes"
row "HEAD huge.bin, first / second, ms" \
    "$(awk -v a="$RE_FIRST_HUGE" -v b="$RE_SECOND_HUGE" 'BEGIN { printf "%.0f / %.1f", a * 1000, b * 1000 }')" \
    "$(awk -v a="$NGINX_FIRST_HUGE" 'BEGIN { printf "%.1f", a * 1000 }')" "" \
    "release-edge hashes 1 GiB for the ETag once"

print_table() {
    local r m a b q n
    printf '\n%-50s %14s %10s %7s  %s\n' "metric" "release-edge" "nginx" "ratio" "note"
    printf '%s\n' "$(printf '%.0s-' {1..100})"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r m a b q n <<<"$r"
        printf '%-50s %14s %10s %7s  %s\n' "$m" "$a" "$b" "$q" "$n"
    done
}

NOTES=()
for k in "${!E[@]}"; do NOTES+=("$k: ${E[$k]}"); done
BUSY_END=$(count_busy)
((BUSY == 0)) || NOTES+=("$BUSY compiler processes were running at start: numbers are noisy")
((BUSY_END == 0)) || NOTES+=("$BUSY_END compiler processes were running at the end: numbers are noisy")
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

print_table
if ((${#NOTES[@]})); then
    printf '\nnotes:\n'
    printf '  %s\n' "${NOTES[@]}"
fi
printf '\nratio = release-edge / nginx. Raw wrk output: %s\n' "$OUT/raw/"

if [[ -n $PREBUILT ]]; then
    GIT_REV="prebuilt, given by BENCH_RELEASE_EDGE_BIN"
else
    GIT_REV="git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    [[ -z $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] || GIT_REV+="+dirty"
fi
{
    echo "# release-edge vs nginx: load benchmark"
    echo
    echo "Generated by \`benches/load.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "- release-edge: \`$BENCH_RELEASE_EDGE_BIN\` ($GIT_REV), log level warn"
    echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), sendfile on, tcp_nopush on, access_log off, worker_processes auto"
    echo "- wrk: $(wrk -v 2>&1 | head -n1 | awk '{print $2}'), -t$BENCH_THREADS; machine: $(nproc) CPUs, $(uname -sr), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
    echo "- load average at start / end: $LOADAVG_START / $LOADAVG_END"
    echo "- tests 1-3: ${BENCH_DURATION}s per server and test, $BENCH_ROUNDS round(s) (median), order alternating; ranges: $BENCH_RANGE_LEN bytes, aligned=$BENCH_RANGE_ALIGNED"
    echo "- test 4: $BENCH_RSS_CONNS concurrent downloads of huge.bin (1 GiB) for ${BENCH_RSS_DURATION}s; VmHWM reset before the test"
    echo "- data: big.bin = 256 MiB of /dev/urandom, huge.bin = big.bin x4, in the page cache"
    echo
    echo "| metric | release-edge | nginx | ratio | note |"
    echo "|---|---:|---:|---:|---|"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r m a b q n <<<"$r"
        echo "| $m | $a | $b | $q | $n |"
    done
    echo
    echo "ratio = release-edge / nginx (for throughput higher is better, for latency and memory lower)."
    if ((${#NOTES[@]})); then
        echo
        echo "Notes:"
        echo
        printf -- '- %s\n' "${NOTES[@]}"
    fi
} >"$OUT/results.md"
printf 'Markdown: %s\n' "$OUT/results.md"
