#!/usr/bin/env bash
# Side-by-side benchmarks on this machine, all in one run:
#   direct HTTP/1.1 (keep-alive)          client -> upstream
#   OpenSSH ssh -L                        client -> ssh -L -> sshd -> upstream
#   sshttp                                client -> sshttp (one SSH connection) -> upstream
#   stock russh, channel per request      session channel + exec + exit-status per request
# Small GETs at concurrency 1 and 64, then 256 MiB GET and POST, then a sweep of SSH
# window and packet sizes for sshttp's bulk transfer. Those measure the transport with
# the bench's own forwarding server. Last, the client library against the real gateway:
#   reqwest, direct or through ssh -L      reqwest::Client -> [ssh -L -> sshd ->] upstream
#   sshttp-client                          sshttp_client::Client -> sshttp serve -> upstream
# and round trips per small GET, through a relay that delays each direction by 25 ms.
# Then the local proxy: plain HTTP clients reaching the upstream over SSH,
#   sshttp proxy --to                      client -> sshttp proxy -> sshttp serve -> upstream
# beside direct HTTP and ssh -L with the same load client.
# Prints a Markdown report.
#
#   bench/run.sh [SECONDS_PER_RATE_RUN]     (default 5)
#   THREADS=2 bench/run.sh                  tokio worker threads per process (default 1)
#
# Every server binds 127.0.0.1 on a port the OS picks; everything started is stopped
# on exit. Needs OpenSSH (ssh, sshd, ssh-keygen).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
bulk=$((256 * 1024 * 1024))

CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build --release --locked -q -p sshttp-bench -p sshttp
threads=${THREADS:-1}
bin=(target/release/sshttp-bench --threads "$threads")
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
# ADDR"); sets $addr.
start() {
    local log=$work/$1.log
    shift
    "$@" > "$log" 2>&1 &
    pids+=($!)
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

start http "${bin[@]}" http-server
http=$addr
start sshttp "${bin[@]}" ssh-server --upstream "$http"
sshttp=$addr
start session "${bin[@]}" session-server
session=$addr
start inline "${bin[@]}" ssh-server
inline=$addr

# OpenSSH: sshd on loopback with a throwaway host key, and ssh -L in front of it.
mkdir -p -m 0755 /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
sshd_port=$(free_port)
cat > "$work/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $sshd_port
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
PidFile $work/sshd.pid
CONF
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2> "$work/sshd.log" &
pids+=($!)
wait_port "$sshd_port"
tunnel_port=$(free_port)
ssh -N -F /dev/null -i "$work/client_key" -p "$sshd_port" \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -L "127.0.0.1:$tunnel_port:$http" "$(id -un)@127.0.0.1" &
pids+=($!)
wait_port "$tunnel_port"
tunnel=127.0.0.1:$tunnel_port
# The same tunnel with the cipher sshttp prefers (OpenSSH prefers ChaCha20-Poly1305).
gcm_port=$(free_port)
ssh -N -F /dev/null -i "$work/client_key" -p "$sshd_port" -c aes256-gcm@openssh.com \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -L "127.0.0.1:$gcm_port:$http" "$(id -un)@127.0.0.1" &
pids+=($!)
wait_port "$gcm_port"
tunnel_gcm=127.0.0.1:$gcm_port

# The real gateway, one any-key vhost in front of the same upstream. Same worker thread
# count as our other processes; the access log (info, one line per request) to a file.
cat > "$work/gateway.toml" <<CONF
listen = ["127.0.0.1:0"]
state_dir = "$work/gateway-state"

[[vhost]]
name = "bench"
upstream = "http://$http"
auth = "any-key"
CONF
start gateway env RUST_LOG=info TOKIO_WORKER_THREADS="$threads" \
    target/release/sshttp serve --config "$work/gateway.toml"
gateway=$addr
# The same without the access log, to show what it costs.
sed "s|gateway-state|gateway-quiet-state|" "$work/gateway.toml" > "$work/gateway-quiet.toml"
start gateway-quiet env RUST_LOG=warn TOKIO_WORKER_THREADS="$threads" \
    target/release/sshttp serve --config "$work/gateway-quiet.toml"
gateway_quiet=$addr
# The local proxy in reverse mode: a local HTTP port whose requests go over one SSH
# session to the quiet gateway, for vhost bench; its request log off as well.
gateway_key=$(sed -n 's/^host key: //p' "$work/gateway-quiet.log" | head -n 1)
start local-proxy env HOME="$work" RUST_LOG=warn TOKIO_WORKER_THREADS="$threads" \
    target/release/sshttp proxy --to "sshttp://bench@$gateway_quiet" --vhost bench \
    --listen 127.0.0.1:0 --identity "$work/client_key" --no-agent -F none \
    --host-key "$gateway_key"
local_proxy=$addr
# A link with a 50 ms round trip, in front of the gateway and of the upstream.
delay_ms=25
start relay-gateway "${bin[@]}" delay-relay --target "$gateway" --delay-ms "$delay_ms"
relay_gateway=$addr
start relay-http "${bin[@]}" delay-relay --target "$http" --delay-ms "$delay_ms"
relay_http=$addr

load() { "${bin[@]}" load "$@"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else '-')" "$1" "$2"; }

echo "# sshttp benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r);" \
     "$(ssh -V 2>&1); rate runs of ${seconds}s each; $threads tokio worker thread(s) in each" \
     "of our processes (load client, HTTP upstream, sshttp server, \`sshttp serve\`); sshd forks per connection."
echo
echo "## Small GETs through to the HTTP upstream (2-byte body), requests per second"
echo
echo "OpenSSH -L uses its default cipher (chacha20-poly1305); -L GCM forces aes256-gcm, which sshttp prefers."
echo
echo "| concurrency | direct HTTP | OpenSSH -L | OpenSSH -L GCM | sshttp | sshttp / direct | sshttp / -L | sshttp / -L GCM |"
echo "|---|---|---|---|---|---|---|---|"
for c in 1 64; do
    d=$(load --mode http --target "$http" --concurrency "$c" --seconds "$seconds" | field rps)
    l=$(load --mode http --target "$tunnel" --concurrency "$c" --seconds "$seconds" | field rps)
    g=$(load --mode http --target "$tunnel_gcm" --concurrency "$c" --seconds "$seconds" | field rps)
    s=$(load --mode sshttp --target "$sshttp" --concurrency "$c" --seconds "$seconds" | field rps)
    echo "| $c | $d | $l | $g | $s | $(ratio "$s" "$d") | $(ratio "$s" "$l") | $(ratio "$s" "$g") |"
done
echo
echo "## Channel per request, answered by the SSH server itself, requests per second"
echo
echo "sshttp: one \`http-get\` channel per request (open with NO_BODY, response, data, EOF, close)."
echo "Stock russh: a \`session\` channel, \`exec\` with reply, data, exit-status, EOF, close."
echo
echo "| concurrency | sshttp | stock russh channel+exec | sshttp / stock |"
echo "|---|---|---|---|"
for c in 1 64; do
    s=$(load --mode sshttp --target "$inline" --concurrency "$c" --seconds "$seconds" | field rps)
    r=$(load --mode session --target "$session" --concurrency "$c" --seconds "$seconds" | field rps)
    echo "| $c | $s | $r | $(ratio "$s" "$r") |"
done
echo
echo "## 256 MiB in one request, MiB/s"
echo
echo "| transfer | direct HTTP | OpenSSH -L | OpenSSH -L GCM | sshttp | sshttp / direct | sshttp / -L | sshttp / -L GCM |"
echo "|---|---|---|---|---|---|---|---|"
for kind in GET POST; do
    if [ "$kind" = GET ]; then args=(--path "/bytes/$bulk" --requests 1); else args=(--upload "$bulk" --requests 1); fi
    d=$(load --mode http --target "$http" "${args[@]}" | field mib_per_s)
    l=$(load --mode http --target "$tunnel" "${args[@]}" | field mib_per_s)
    g=$(load --mode http --target "$tunnel_gcm" "${args[@]}" | field mib_per_s)
    s=$(load --mode sshttp --target "$sshttp" "${args[@]}" | field mib_per_s)
    echo "| $kind | $d | $l | $g | $s | $(ratio "$s" "$d") | $(ratio "$s" "$l") | $(ratio "$s" "$g") |"
done
echo
echo "## sshttp window and packet size (256 MiB GET, MiB/s; small GET c=64, req/s)"
echo
echo "| window | max packet | 256 MiB GET | small GET c=64 |"
echo "|---|---|---|---|"
for setting in "2097152 32768" "8388608 32768" "16777216 32768" "8388608 65535" "16777216 65535"; do
    set -- $setting
    start "sweep-$1-$2" "${bin[@]}" ssh-server --upstream "$http" --window "$1" --packet "$2"
    g=$(load --mode sshttp --target "$addr" --window "$1" --packet "$2" --path "/bytes/$bulk" --requests 1 | field mib_per_s)
    q=$(load --mode sshttp --target "$addr" --window "$1" --packet "$2" --concurrency 64 --seconds "$seconds" | field rps)
    echo "| $(($1 / 1048576)) MiB | $2 | $g | $q |"
done
echo
echo "## Client library: sshttp-client vs reqwest"
echo
echo "The full path: \`sshttp_client::Client\` (one pooled SSH session) to the real \`sshttp serve\`"
echo "(any-key auth, identity fields, access log), which forwards to the same HTTP upstream."
echo "reqwest (HTTP/1.1 keep-alive, one connection per request in flight) talks to the upstream"
echo "directly or through the OpenSSH tunnels above."
echo
declare -A client_rps
echo "### Small GETs (2-byte body), requests per second"
echo
echo "| concurrency | reqwest direct | reqwest via -L | reqwest via -L GCM | sshttp-client via sshttp serve | client / direct | client / -L | client / -L GCM |"
echo "|---|---|---|---|---|---|---|---|"
for c in 1 64; do
    d=$(load --mode reqwest --target "$http" --concurrency "$c" --seconds "$seconds" | field rps)
    l=$(load --mode reqwest --target "$tunnel" --concurrency "$c" --seconds "$seconds" | field rps)
    g=$(load --mode reqwest --target "$tunnel_gcm" --concurrency "$c" --seconds "$seconds" | field rps)
    s=$(load --mode client --target "$gateway" --concurrency "$c" --seconds "$seconds" | field rps)
    client_rps[$c]=$s
    echo "| $c | $d | $l | $g | $s | $(ratio "$s" "$d") | $(ratio "$s" "$l") | $(ratio "$s" "$g") |"
done
echo
echo "Where the difference comes from, requests per second: the bare \`sshttp_client::Connection\`"
echo "and the pooled \`Client\` against the bench's forwarding server (no policy, no log), then"
echo "\`sshttp serve\` with its access log off (RUST_LOG=warn) and on (the column above)."
echo
echo "| concurrency | Connection -> bench server | Client -> bench server | Client -> sshttp serve, no access log | Client -> sshttp serve |"
echo "|---|---|---|---|---|"
for c in 1 64; do
    a=$(load --mode sshttp --target "$sshttp" --concurrency "$c" --seconds "$seconds" | field rps)
    b=$(load --mode client --target "$sshttp" --concurrency "$c" --seconds "$seconds" | field rps)
    q=$(load --mode client --target "$gateway_quiet" --concurrency "$c" --seconds "$seconds" | field rps)
    echo "| $c | $a | $b | $q | ${client_rps[$c]} |"
done
echo
echo "### 256 MiB in one request, MiB/s"
echo
echo "| transfer | reqwest direct | reqwest via -L | reqwest via -L GCM | sshttp-client via sshttp serve | client / direct | client / -L | client / -L GCM |"
echo "|---|---|---|---|---|---|---|---|"
for kind in GET POST; do
    if [ "$kind" = GET ]; then args=(--path "/bytes/$bulk" --requests 1); else args=(--upload "$bulk" --requests 1); fi
    d=$(load --mode reqwest --target "$http" "${args[@]}" | field mib_per_s)
    l=$(load --mode reqwest --target "$tunnel" "${args[@]}" | field mib_per_s)
    g=$(load --mode reqwest --target "$tunnel_gcm" "${args[@]}" | field mib_per_s)
    s=$(load --mode client --target "$gateway" "${args[@]}" | field mib_per_s)
    echo "| $kind | $d | $l | $g | $s | $(ratio "$s" "$d") | $(ratio "$s" "$l") | $(ratio "$s" "$g") |"
done
echo
echo "### Round trips per small GET on an established session"
echo
echo "A relay delays every chunk by ${delay_ms} ms each way (RTT $((2 * delay_ms)) ms). After one warm-up"
echo "request (which connects), 40 sequential small GETs at concurrency 1; mean latency / RTT."
echo "The warm-up column is connect plus first request, in RTTs (the relay delays data, not TCP's"
echo "own handshake, so for reqwest it is the first request alone)."
echo
echo "| client | through the relay to | mean latency (ms) | latency / RTT | warm-up / RTT |"
echo "|---|---|---|---|---|"
rtt=$((2 * delay_ms))
for row in "reqwest direct|reqwest|$relay_http|the HTTP upstream" "sshttp-client|client|$relay_gateway|sshttp serve"; do
    IFS='|' read -r name mode target to <<< "$row"
    out=$(load --mode "$mode" --target "$target" --concurrency 1 --requests 40)
    t=$(field latency_ms <<< "$out")
    w=$(field warm_up_ms <<< "$out")
    echo "| $name | $to | $t | $(ratio "$t" "$rtt") | $(ratio "$w" "$rtt") |"
done
echo
echo "## Local proxy: plain HTTP clients over SSH"
echo
echo "The bench's HTTP/1.1 load client (keep-alive, one connection per request in flight) against"
echo "the upstream directly, through \`ssh -L\`, and through \`sshttp proxy --to\` (reverse mode),"
echo "which carries every local connection's requests as channels of one SSH session to"
echo "\`sshttp serve\` (no access logs). Small GETs in requests per second, 256 MiB in MiB/s."
echo
echo "| load | direct HTTP | OpenSSH -L | OpenSSH -L GCM | sshttp proxy | proxy / direct | proxy / -L | proxy / -L GCM |"
echo "|---|---|---|---|---|---|---|---|"
for row in "GET c=1|--concurrency 1 --seconds $seconds|rps" "GET c=64|--concurrency 64 --seconds $seconds|rps" \
    "256 MiB GET|--path /bytes/$bulk --requests 1|mib_per_s" "256 MiB POST|--upload $bulk --requests 1|mib_per_s"; do
    IFS='|' read -r name args unit <<< "$row"
    read -ra args <<< "$args"
    d=$(load --mode http --target "$http" "${args[@]}" | field "$unit")
    l=$(load --mode http --target "$tunnel" "${args[@]}" | field "$unit")
    g=$(load --mode http --target "$tunnel_gcm" "${args[@]}" | field "$unit")
    p=$(load --mode http --target "$local_proxy" "${args[@]}" | field "$unit")
    echo "| $name | $d | $l | $g | $p | $(ratio "$p" "$d") | $(ratio "$p" "$l") | $(ratio "$p" "$g") |"
done
