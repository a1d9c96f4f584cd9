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
# Then wrk (a public tool) against the plain HTTP ports of direct, ssh -L and the local
# proxy. Prints a Markdown report. The quick run also visits the upstream as a name
# published on the gateway (spec §14.14), by stock ssh -R and by sshttp publish:
#   published                              sshttp_client::Client -> sshttp serve -> SSH
#                                          (forwarded-tcpip) -> publisher -> upstream
#
#   bench/run.sh [SECONDS_PER_RATE_RUN]     (default 5)
#   bench/run.sh --quick --json FILE        about 5 minutes; one JSON object to FILE
#                                           (the fields issue 17 names), a summary on stdout
#   THREADS=2 bench/run.sh                  tokio worker threads per bench process
#                                           (default 1); `sshttp serve` and `sshttp proxy`
#                                           always run with their defaults
#
# Every server binds 127.0.0.1 on a port the OS picks; everything started is stopped
# on exit. Installs what it needs when missing (OpenSSH, nginx-light, wrk, openssl).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
json=
seconds=
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1 ;;
        --json) json=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) seconds=$1 ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then seconds=${seconds:-3}; else seconds=${seconds:-5}; fi
bulk=$((256 * 1024 * 1024))

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

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
http_pid=${pids[-1]}
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
ssh_l_pid=$!
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

# The real gateway, one any-key vhost in front of the same upstream, run as a user gets
# it: its default runtime (a worker thread per core) and the access log (info, one line
# per request) on, to a file.
cat > "$work/gateway.toml" <<CONF
listen = ["127.0.0.1:0"]
state_dir = "$work/gateway-state"

[[vhost]]
name = "bench"
upstream = "http://$http"
auth = "any-key"

[[publish]]
names = "*.bench"
auth = "any-key"
visitors = "any-key"
CONF
start gateway env RUST_LOG=info \
    target/release/sshttp serve --config "$work/gateway.toml"
gateway=$addr
# The same without the access log, to show what it costs.
sed "s|gateway-state|gateway-quiet-state|" "$work/gateway.toml" > "$work/gateway-quiet.toml"
start gateway-quiet env RUST_LOG=warn \
    target/release/sshttp serve --config "$work/gateway-quiet.toml"
gateway_quiet=$addr
# The local proxy in reverse mode: a local HTTP port whose requests go over one SSH
# session to the quiet gateway, for vhost bench; its request log off as well.
gateway_key=$(sed -n 's/^host key: //p' "$work/gateway.log" | head -n 1)
start local-proxy env HOME="$work" RUST_LOG=warn \
    target/release/sshttp proxy --to "sshttp://bench@$gateway" --vhost bench \
    --listen 127.0.0.1:0 --identity "$work/client_key" --no-agent -F none \
    --host-key "$gateway_key"
local_proxy=$addr
local_proxy_pid=${pids[-1]}
# The same upstream published on the gateway (spec §14.14), by stock `ssh -R` and by
# `sshttp publish`: visitors' requests travel gateway -> publisher over SSH, then to
# the upstream over loopback TCP.
ssh -N -F /dev/null -i "$work/client_key" -p "${gateway##*:}" \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -o ExitOnForwardFailure=yes -R "ssh-r.bench:80:$http" "bench@127.0.0.1" &
pids+=($!)
env HOME="$work" RUST_LOG=warn target/release/sshttp publish "sshttp://bench@$gateway" \
    --name publish.bench --to "http://$http" --identity "$work/client_key" --no-agent -F none \
    --host-key "$gateway_key" > "$work/publish.log" 2>&1 &
pids+=($!)
for name in ssh-r.bench publish.bench; do
    for _ in $(seq 100); do
        "${bin[@]}" load --mode client --target "$gateway" --vhost "$name" --requests 1 \
            > /dev/null 2>&1 && break
        sleep 0.1
    done
done

# A link with a 50 ms round trip, in front of the gateway and of the upstream.
delay_ms=25
start relay-gateway "${bin[@]}" delay-relay --target "$gateway" --delay-ms "$delay_ms"
relay_gateway=$addr
start relay-http "${bin[@]}" delay-relay --target "$http" --delay-ms "$delay_ms"
relay_http=$addr
start relay-sshd "${bin[@]}" delay-relay --target "127.0.0.1:$sshd_port" --delay-ms "$delay_ms"
relay_sshd=$addr

# Stock ssh -L to the gateway itself: the tunnel's destination names the vhost, and the
# gateway serves the HTTP/1.1 on the channel (spec §14.10).
gw_tunnel_port=$(free_port)
ssh -N -F /dev/null -i "$work/client_key" -p "${gateway##*:}" \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -L "127.0.0.1:$gw_tunnel_port:bench:80" "bench@127.0.0.1" &
pids+=($!)
wait_port "$gw_tunnel_port"
gw_tunnel=127.0.0.1:$gw_tunnel_port

# HTTPS with client certificates, the incumbent of key-authenticated HTTP: nginx
# (TLS 1.3, ssl_verify_client on) in front of the same upstream, keep-alive both sides.
tls=$work/tls
mkdir -p "$tls"
openssl req -x509 -newkey ed25519 -nodes -days 2 -subj /CN=bench-ca -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
for name in server client; do
    openssl req -newkey ed25519 -nodes -subj "/CN=$name" -keyout "$tls/$name.key" -out "$tls/$name.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost\n' > "$tls/$name.ext"
    openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 2 -extfile "$tls/$name.ext" -out "$tls/$name.pem" 2>/dev/null
done
https_port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
daemon off;
user root;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    upstream bench { server $http; keepalive 128; }
    server {
        listen 127.0.0.1:$https_port ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate $tls/server.pem;
        ssl_certificate_key $tls/server.key;
        ssl_client_certificate $tls/ca.pem;
        ssl_verify_client on;
        keepalive_requests 1000000;
        client_max_body_size 0;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
CONF
/usr/sbin/nginx -c "$work/nginx/nginx.conf" 2> "$work/nginx/stderr.log" &
pids+=($!)
wait_port "$https_port"
https=127.0.0.1:$https_port
https_args=(--ca "$tls/ca.pem" --cert "$tls/client.pem" --key "$tls/client.key" --server-name localhost)

load() { "${bin[@]}" load "$@"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else '-')" "$1" "$2"; }


# Clock ticks of CPU (user + system) the processes PIDS used so far.
ticks() {
    local total=0 pid
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
gateway_pid() { pgrep -f "sshttp serve --config $work/gateway.toml" | head -n 1; }

if [ "$quick" = 1 ]; then
    results=$work/results
    : > "$results"
    note() { echo "$1 $2" >> "$results"; echo "$1 = $2"; }
    commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/RESULTS.md' || echo "+changes")
    echo "sshttp quick benchmark, commit $commit, ${seconds}s rate runs, $(nproc) cores" >&2
    for c in 1 64; do
        for row in "direct|http|$http" "ssh_l|http|$tunnel" "client|client|$gateway" \
            "proxy|http|$local_proxy" "ssh_l_gateway|http|$gw_tunnel" "https_mtls|https|$https" \
            "published_ssh_r|client|$gateway|ssh-r.bench" "published_sshttp|client|$gateway|publish.bench"; do
            IFS='|' read -r name mode target vhost <<< "$row"
            extra=()
            [ "$mode" = https ] && extra=("${https_args[@]}")
            [ -n "$vhost" ] && extra=(--vhost "$vhost")
            out=$(load --mode "$mode" --target "$target" --concurrency "$c" --seconds "$seconds" "${extra[@]}")
            note "small_get_c$c.$name" "$(field rps <<< "$out")"
            note "p999_ms_c$c.$name" "$(field p999_ms <<< "$out")"
        done
    done
    # CPU per small request at c=64, in each process of each path (not in the JSON):
    # utime+stime of the servers from /proc, the load client's from `times`.
    echo "CPU microseconds per small GET at c=64 (load client / middle / server / upstream):" >&2
    for row in "ssh_l|http|$tunnel" "client|client|$gateway" "proxy|http|$local_proxy"; do
        IFS='|' read -r name mode target <<< "$row"
        gw=$(gateway_pid)
        case $name in
            ssh_l) middle=($ssh_l_pid); server=($(pgrep -x sshd)) ;;
            client) middle=(); server=($gw) ;;
            proxy) middle=($local_proxy_pid); server=($gw) ;;
        esac
        m0=$(ticks "${middle[@]}"); s0=$(ticks "${server[@]}"); u0=$(ticks "$http_pid")
        out=$( { load --mode "$mode" --target "$target" --concurrency 64 --seconds "$seconds"; times; } )
        m1=$(ticks "${middle[@]}"); s1=$(ticks "${server[@]}"); u1=$(ticks "$http_pid")
        n=$(field requests <<< "$out")
        # `times`: the last line is the children's user and system time, "XmY.YYYs XmY.YYYs".
        own=$(tail -n 1 <<< "$out" | python3 -c "import re,sys; print(sum(int(m)*60+float(x) for m,x in re.findall(r'(\d+)m([\d.]+)s', sys.stdin.read())))")
        tick=$(getconf CLK_TCK)
        python3 -c "import sys; n=int(sys.argv[2]); t=int(sys.argv[7]); us=lambda d: round(d*1e6/n, 1)
print(f'  {sys.argv[1]}: {us(float(sys.argv[3]))} / {us((int(sys.argv[4]))/t)} / {us(int(sys.argv[5])/t)} / {us(int(sys.argv[6])/t)}', file=sys.stderr)" \
            "$name" "$n" "$own" "$((m1 - m0))" "$((s1 - s0))" "$((u1 - u0))" "$tick"
    done
    for kind in get post; do
        if [ "$kind" = get ]; then args=(--path "/bytes/$bulk" --requests 1); else args=(--upload "$bulk" --requests 1); fi
        for row in "direct|http|$http" "ssh_l|http|$tunnel" "client|client|$gateway" "proxy|http|$local_proxy" \
            "published_ssh_r|client|$gateway|ssh-r.bench" "published_sshttp|client|$gateway|publish.bench"; do
            IFS='|' read -r name mode target vhost <<< "$row"
            extra=()
            [ -n "$vhost" ] && extra=(--vhost "$vhost")
            note "bulk_${kind}_mibs.$name" "$(load --mode "$mode" --target "$target" "${args[@]}" "${extra[@]}" | field mib_per_s)"
        done
    done
    # Cold: a new client process, connect plus first request to its last byte, through
    # the 50 ms relay; the best of three (the relay's timer granularity adds, never
    # removes). OpenSSH: `ssh host true` to sshd through the same kind of relay.
    rtt=$((2 * delay_ms))
    best=
    for _ in 1 2 3; do
        w=$(load --mode client --target "$relay_gateway" --requests 1 | field warm_up_ms)
        best=$(python3 -c "import sys; v=[float(x) for x in sys.argv[1:] if x]; print(min(v))" "$w" "$best")
    done
    note cold_rtts.client "$(python3 -c "print(round($best / $rtt, 2))")"
    best=
    for _ in 1 2 3; do
        t0=$(date +%s%N)
        ssh -F /dev/null -i "$work/client_key" -p "${relay_sshd##*:}" \
            -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
            "$(id -un)@127.0.0.1" true
        w=$(python3 -c "print(($(date +%s%N) - $t0) / 1e6)")
        best=$(python3 -c "import sys; v=[float(x) for x in sys.argv[1:] if x]; print(min(v))" "$w" "$best")
    done
    note cold_rtts.openssh_exec "$(python3 -c "print(round($best / $rtt, 2))")"
    # Idle sessions: held open against the gateway (access log on, default runtime),
    # then one new client must still be served.
    idle_count=${IDLE_SESSIONS:-10000}
    gw_pid=$(gateway_pid)
    before=$(rss_mib "$gw_pid")
    "${bin[@]}" idle --target "$gateway" --count "$idle_count" > "$work/idle.log" 2>&1 &
    idle_pid=$!
    pids+=($idle_pid)
    for _ in $(seq 1200); do
        grep -q '^held' "$work/idle.log" && break
        kill -0 "$idle_pid" 2>/dev/null || { cat "$work/idle.log" >&2; exit 1; }
        sleep 0.25
    done
    grep -q '^held' "$work/idle.log" || { echo "error: idle sessions not held in time" >&2; exit 1; }
    sleep 2
    after=$(rss_mib "$gw_pid")
    load --mode client --target "$gateway" --requests 1 > /dev/null
    note idle_sessions.count "$(sed -n 's/^held \([0-9]*\) sessions/\1/p' "$work/idle.log")"
    note idle_sessions.gateway_rss_mib "$after"
    echo "gateway RSS before the idle sessions: $before MiB; per session: $(python3 -c "print(round(($after - $before) * 1024 / $idle_count, 1))") KiB" >&2
    kill "$idle_pid" 2>/dev/null || true
    python3 - "$results" "$commit" "${json:-/dev/stdout}" <<'PY'
import json, sys
results, commit, out = sys.argv[1:4]
doc = {}
for line in open(results):
    key, value = line.split()
    group, _, name = key.partition(".")
    doc.setdefault(group, {})[name] = float(value) if value not in ("", "-") else None
doc["idle_sessions"]["count"] = int(doc["idle_sessions"]["count"])
doc["commit"] = commit
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
PY
    exit 0
fi

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
echo "\`sshttp serve\` (its access log on). Small GETs in requests per second, 256 MiB in MiB/s."
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
echo
echo "## Public tools only: wrk"
echo
echo "wrk (one thread, keep-alive) against the plain HTTP ports of the upstream, OpenSSH \`ssh -L\`"
echo "(default cipher) and \`sshttp proxy --to\` to \`sshttp serve\`: anyone can reproduce these"
echo "with wrk, ssh and the sshttp binary. Requests per second, and latency percentiles in ms."
echo
echo "| connections | path | req/s | p50 | p99 |"
echo "|---|---|---|---|---|"
for c in 1 64; do
    for row in "direct HTTP|$http" "OpenSSH -L|$tunnel" "sshttp proxy|$local_proxy"; do
        IFS='|' read -r name target <<< "$row"
        out=$(wrk -t1 -c"$c" -d"${seconds}s" --latency "http://$target/small")
        rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
        p50=$(awk '$1 == "50%" {print $2}' <<< "$out")
        p99=$(awk '$1 == "99%" {print $2}' <<< "$out")
        echo "| $c | $name | $rps | $p50 | $p99 |"
    done
done
