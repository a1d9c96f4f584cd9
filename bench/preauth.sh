#!/usr/bin/env bash
# Pre-authentication flood (issue 14): how an honest client fares while SOCKETS silent
# TCP connections are held open against `sshttp serve` with its default limits.
#   hostile: SOCKETS sockets from 127.1.X.Y (at most 50 per source address, under the
#            per-source cap of 64), opened and then left silent
#   honest:  OpenSSH `ssh gw multiply a=4 b=5` five times, timed, while they are held
# Reports what the gateway's metrics say it holds (unauthenticated connections, closed
# to make room) and the honest client's slowest run. Everything binds 127.0.0.1 (or
# other loopback addresses) on ports the OS picks; everything started is stopped on
# exit.
#
#   bench/preauth.sh [SOCKETS]     (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
sockets=${1:-2000}
ulimit -n "$(ulimit -Hn)"

CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build --release --locked -q -p sshttp
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/gw.toml" <<CONF
listen = ["127.0.0.1:0"]
state_dir = "$work/state"
default_vhost = "localhost"

[metrics]
listen = "127.0.0.1:0"

[[vhost]]
name = "localhost"
upstream = "demo"
auth = "any-key"
CONF
RUST_LOG=warn target/release/sshttp serve --config "$work/gw.toml" > "$work/gw.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    grep -q '^metrics: ' "$work/gw.log" && break
    sleep 0.05
done
addr=$(sed -n 's/^sshttp gateway listening on //p' "$work/gw.log" | head -n 1)
metrics=$(sed -n 's|^metrics: http://\(.*\)/metrics$|\1|p' "$work/gw.log" | head -n 1)
port=${addr##*:}
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
echo "[127.0.0.1]:$port $(ssh-keygen -y -f "$work/state/ssh_host_ed25519_key")" > "$work/known_hosts"
honest() {
    ssh -F /dev/null -T -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=yes \
        -o UserKnownHostsFile="$work/known_hosts" -o IdentitiesOnly=yes -i "$work/id" \
        alice@127.0.0.1 multiply a=4 b=5
}
metric() {
    python3 - "$metrics" "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
print(next((line.split()[-1] for line in text.splitlines() if line.split(" ")[0] == sys.argv[2]), "-"))
PY
}

# The hostile sockets, held until this script's stdin closes.
mkfifo "$work/hold"
cat > "$work/hostile.py" <<'PY'
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for i in range(count):
    s = socket.socket()
    s.bind((f"127.1.{1 + i // 50 // 250}.{1 + (i // 50) % 250}", 0))
    s.connect(("127.0.0.1", port))
    held.append(s)
print(f"opened {len(held)}", flush=True)
sys.stdin.read()
PY
python3 "$work/hostile.py" "$port" "$sockets" < "$work/hold" > "$work/hostile.log" 2>&1 &
pids+=($!)
exec 3> "$work/hold"
for _ in $(seq 600); do
    grep -q '^opened' "$work/hostile.log" && break
    sleep 0.1
done
grep '^opened' "$work/hostile.log" || { cat "$work/hostile.log"; exit 1; }
sleep 1

echo "| run | honest ssh (s) | answer |"
echo "|---|---|---|"
slowest=0
for run in 1 2 3 4 5; do
    start=$(date +%s.%N)
    answer=$(honest)
    took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}')
    slowest=$(awk -v a="$slowest" -v b="$took" 'BEGIN {print (b > a) ? b : a}')
    echo "| $run | $took | $answer |"
done
echo
echo "Hostile sockets opened: $sockets; held by the gateway while the honest client ran:" \
    "$(metric sshttp_unauthenticated_connections) unauthenticated (cap 1024, 64 per source);" \
    "closed to make room: $(metric sshttp_unauthenticated_evicted_total);" \
    "failed accepts: $(metric sshttp_accept_errors_total); fd limit $(metric sshttp_fd_limit)."
echo "Slowest honest run: ${slowest} s."
exec 3>&-
