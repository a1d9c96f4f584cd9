#!/usr/bin/env bash
# Soak: memory over time under a steady load (issue 14). Small GETs through
#   client -> sshttp proxy --to (one pooled SSH connection) -> sshttp serve -> upstream
# with the bench's HTTP/1.1 load client (keep-alive, one connection per request in
# flight) for SECONDS. Every 10 s it samples VmRSS of `sshttp serve` and of
# `sshttp proxy` from /proc/PID/status beside the requests done so far, and the
# gateway's own count of SSH connections accepted (its metrics listener,
# `sshttp_connections_total`), which must stay 1: every request on one connection.
# Then a shorter phase through stock OpenSSH to a fresh gateway,
#   client -> ssh -L -> sshttp serve -> upstream
# with `Connection: close`, so that every request is a forwarded channel of its own.
# Prints a Markdown report: the series, RSS after warm-up (the first sample at 30 s or
# later), the last sample, the growth per 100,000 requests after warm-up, and RSS after
# 100,000 requests.
#
#   bench/soak.sh [SECONDS] [CONCURRENCY]   (default 300 and 16)
#   CLOSE_SECONDS=60 bench/soak.sh          the ssh -L phase's length; 0 skips it
#   THREADS=1 bench/soak.sh                 tokio worker threads in `sshttp serve` and
#                                           `sshttp proxy` (default: their own default)
#
# `sshttp serve` runs with its default limits and RUST_LOG=warn (no access log), as the
# proxy rows of bench/run.sh do. Every server binds 127.0.0.1 on a port the OS picks;
# everything started is stopped on exit, and each load run is bounded by `timeout`.
# Needs OpenSSH's ssh and ssh-keygen for the second phase.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
concurrency=${2:-16}
close_seconds=${CLOSE_SECONDS:-60}
every=10
warm_up=30

CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build --release --locked -q -p sshttp-bench -p sshttp
bin=(target/release/sshttp-bench --threads 1)
sshttp_env=(env RUST_LOG=warn)
if [ -n "${THREADS:-}" ]; then sshttp_env+=(TOKIO_WORKER_THREADS="$THREADS"); fi
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Starts a server that prints "listening on ADDR" (or `sshttp serve`'s
# "sshttp gateway listening on ADDR", `sshttp proxy`'s "sshttp proxy listening on
# ADDR"); sets $addr and $pid.
start() {
    local log=$work/$1.log
    shift
    "$@" > "$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        addr=$(sed -n 's/^\(sshttp gateway \|sshttp proxy \)\?listening on //p' "$log" | head -n 1)
        [ -n "$addr" ] && return 0
        sleep 0.05
    done
    echo "error: $* did not start" >&2
    cat "$log" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "error: nothing listens on port $1" >&2
    exit 1
}

# Starts a gateway NAME with the default limits, one any-key vhost `bench` in front of
# the upstream, and a metrics listener; sets $gateway, $gateway_pid, $metrics.
start_gateway() {
    cat > "$work/$1.toml" <<CONF
listen = ["127.0.0.1:0"]
state_dir = "$work/$1-state"

[metrics]
listen = "127.0.0.1:0"

[[vhost]]
name = "bench"
upstream = "http://$http"
auth = "any-key"
CONF
    start "$1" "${sshttp_env[@]}" target/release/sshttp serve --config "$work/$1.toml"
    gateway=$addr
    gateway_pid=$pid
    metrics=$(sed -n 's|^metrics: http://\(.*\)/metrics$|\1|p' "$work/$1.log" | head -n 1)
    [ -n "$metrics" ] || { echo "error: no metrics listener in $work/$1.log" >&2; exit 1; }
}

# The value of the unlabelled metric NAME on the gateway's metrics listener.
metric() {
    python3 - "$metrics" "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
print(next((line.split()[-1] for line in text.splitlines() if line.split(" ")[0] == sys.argv[2]), "-"))
PY
}

# VmRSS of process PID in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
# growth KIB_BEFORE KIB_AFTER REQUESTS_BEFORE REQUESTS_AFTER: RSS growth per request.
growth() {
    awk -v a="$1" -v b="$2" -v ra="$3" -v rb="$4" 'BEGIN {
        d = (b - a) * 1024 / (rb - ra)
        printf "%+.2f MiB per 100,000 requests (%+.1f bytes per request)", d * 100000 / 1048576, d
    }'
}

# soak NAME SECONDS CLIENT_PID CLIENT_LABEL LOAD_ARGS...: runs the load client for
# SECONDS with the given arguments, prints the series as a table as it comes, then
# the summary. The gateway is $gateway_pid, with metrics at $metrics.
soak() {
    local name=$1 secs=$2 client_pid=$3 client=$4
    shift 4
    local log=$work/$name-load.log
    : > "$log"
    timeout $((secs + 60)) "${bin[@]}" load --mode http --concurrency "$concurrency" \
        --seconds "$secs" --report-every "$every" "$@" > "$log" 2>&1 &
    local load_pid=$!
    pids+=("$load_pid")
    local elapsed=() requests=() serve=() other=()
    echo "| elapsed (s) | requests | serve RSS (MiB) | $client RSS (MiB) | SSH connections accepted |"
    echo "|---|---|---|---|---|"
    while read -r line; do
        case $line in
            elapsed=*) ;;
            *) continue ;;
        esac
        local e r s c n
        e=$(sed -n 's/^elapsed=\([0-9]*\).*/\1/p' <<< "$line")
        r=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<< "$line")
        s=$(rss_kib "$gateway_pid")
        c=$(rss_kib "$client_pid")
        n=$(metric sshttp_connections_total)
        elapsed+=("$e") requests+=("$r") serve+=("$s") other+=("$c")
        echo "| $e | $r | $(mib "$s") | $(mib "$c") | $n |"
    done < <(tail -n +1 -f --pid="$load_pid" "$log")
    if ! wait "$load_pid"; then
        echo "error: the load client failed" >&2
        cat "$log" >&2
        exit 1
    fi
    local result
    result=$(grep '^mode=' "$log")
    echo
    echo "Load client: \`$result\`"
    echo
    echo "Gateway metrics at the end: sshttp_connections_total $(metric sshttp_connections_total)," \
        "sshttp_connections_open $(metric sshttp_connections_open)," \
        "sshttp_channels_open $(metric sshttp_channels_open)," \
        "requests answered 2xx $(metric 'sshttp_requests_total{vhost="bench",code="2xx"}')" \
        "(the load client's count plus its one warm-up request)."
    echo
    local last=$((${#elapsed[@]} - 1)) warm=-1 at100k=-1 i
    for i in "${!elapsed[@]}"; do
        if [ "$warm" -lt 0 ] && [ "${elapsed[i]}" -ge "$warm_up" ]; then warm=$i; fi
        if [ "$at100k" -lt 0 ] && [ "${requests[i]}" -ge 100000 ]; then at100k=$i; fi
    done
    if [ "$warm" -lt 0 ] || [ "$warm" -ge "$last" ]; then
        echo "Too short for a warm-up of ${warm_up}s and a sample after it."
        return 0
    fi
    echo "- After warm-up (${elapsed[warm]} s, ${requests[warm]} requests): serve $(mib "${serve[warm]}") MiB," \
        "$client $(mib "${other[warm]}") MiB."
    echo "- Last (${elapsed[last]} s, ${requests[last]} requests): serve $(mib "${serve[last]}") MiB," \
        "$client $(mib "${other[last]}") MiB."
    local rw=${requests[warm]} rl=${requests[last]}
    echo "- Growth from warm-up to last: serve $(growth "${serve[warm]}" "${serve[last]}" "$rw" "$rl");" \
        "$client $(growth "${other[warm]}" "${other[last]}" "$rw" "$rl")."
    if [ "$at100k" -ge 0 ]; then
        echo "- After 100,000 requests (first sample past it: ${elapsed[at100k]} s, ${requests[at100k]} requests):" \
            "serve $(mib "${serve[at100k]}") MiB, $client $(mib "${other[at100k]}") MiB."
    fi
}

start http "${bin[@]}" http-server
http=$addr

echo "# sshttp soak, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r);" \
     "load average at start $(cut -d ' ' -f 1-3 /proc/loadavg); commit $(git rev-parse --short HEAD)" \
     "$(git diff --quiet HEAD -- 2>/dev/null && echo '(tracked files unchanged)' || echo '(with uncommitted changes)');" \
     "tokio worker threads in \`sshttp serve\` and \`sshttp proxy\`: ${THREADS:-their default}."
echo
echo "## Small GETs through \`sshttp proxy --to\`, one SSH connection, c=$concurrency, ${seconds}s"
echo
start_gateway gateway
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
gateway_key=$(sed -n 's/^host key: //p' "$work/gateway.log" | head -n 1)
start local-proxy "${sshttp_env[@]}" HOME="$work" \
    target/release/sshttp proxy --to "sshttp://bench@$gateway" --vhost bench \
    --listen 127.0.0.1:0 --identity "$work/client_key" --no-agent -F none \
    --host-key "$gateway_key"
proxy=$addr
proxy_pid=$pid
soak proxy "$seconds" "$proxy_pid" proxy --target "$proxy"
kill "$proxy_pid" "$gateway_pid" 2>/dev/null || true

if [ "$close_seconds" -gt 0 ]; then
    echo
    echo "## Small GETs through OpenSSH \`ssh -L\` with \`Connection: close\`, a channel per request, c=$concurrency, ${close_seconds}s"
    echo
    echo "A fresh gateway; \`ssh -L 127.0.0.1:PORT:bench:80\` to it, one SSH connection."
    echo
    start_gateway gateway-close
    tunnel_port=$(free_port)
    ssh -N -F /dev/null -i "$work/client_key" -p "${gateway##*:}" \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        -L "127.0.0.1:$tunnel_port:bench:80" "bench@127.0.0.1" &
    ssh_pid=$!
    pids+=("$ssh_pid")
    wait_port "$tunnel_port"
    soak close "$close_seconds" "$ssh_pid" "ssh" --target "127.0.0.1:$tunnel_port" --close
fi
