#!/usr/bin/env bash
# STOMP over TLS against plain TCP in one run: queue 1->1 and topic 1->10 (100 B, auto ack) on
# romp's plain and TLS ports (and queue 1->1 over WebSocket against WSS), the same against RabbitMQ's plain and TLS STOMP listeners with
# the same certificate, and full TLS handshakes per second (ECDSA P-256, no resumption, each
# with CONNECT/CONNECTED) on both. The CA and server certificate are made fresh with openssl.
# Usage: scripts/tls.sh [SECONDS=5]. Output: bench/tls.jsonl and a table.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
cargo build --release -q --bin romp --bin romp-bench || exit 1
. scripts/lib.sh
raw=$(bench_file tls.jsonl)
work=$(mktemp -d "${TMPDIR:-/tmp}/romp-tls.XXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; scripts/peers/rabbitmq.sh stop >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
pki=$work/pki
scripts/test-pki.sh "$pki" "romp bench CA"
bench() { # broker name port extra-args...
  local broker=$1 name=$2 port=$3 line
  shift 3
  line=$(timeout $((secs + 60)) ./target/release/romp-bench --port "$port" --duration "$secs" --warmup 1 --json "$@" 2>/dev/null | tail -1)
  [ -n "$line" ] || line='{"failed":true}'
  echo "{\"broker\":\"$broker\",\"name\":\"$name\",\"run\":$line}" >>"$raw"
  echo "$broker / $name: $line" >&2
}
suite() { # broker plain-port tls-port
  bench "$1" "queue 1->1 plain" "$2" --kind queue
  bench "$1" "queue 1->1 tls" "$3" --kind queue --tls "$pki/ca.pem"
  bench "$1" "topic 1->10 plain" "$2" --kind topic --consumers 10
  bench "$1" "topic 1->10 tls" "$3" --kind topic --consumers 10 --tls "$pki/ca.pem"
  bench "$1" "handshakes" "$3" --tls "$pki/ca.pem" --handshakes
}
port=$(free_port)
tls_port=$(free_port)
web=$(free_port)
web_tls=$(free_port)
cat >"$work/romp.toml" <<EOF
ports = [$port]
tls_ports = [$tls_port]
web_port = $web
web_tls_port = $web_tls
admin_port = 0
data_dir = ""
tls_cert = "$pki/server.pem"
tls_key = "$pki/server.key"
EOF
./target/release/romp --config "$work/romp.toml" >"$work/romp.log" 2>&1 &
pid=$!
sleep 1
suite romp "$port" "$tls_port"
bench romp "queue 1->1 ws" "$web" --kind queue --ws /stomp
bench romp "queue 1->1 wss" "$web_tls" --kind queue --ws /stomp --tls "$pki/ca.pem"
kill "$pid"; wait "$pid" 2>/dev/null
pid=
if RABBIT_TLS_CERT=$pki/server.pem RABBIT_TLS_KEY=$pki/server.key RABBIT_TLS_CA=$pki/ca.pem \
  scripts/peers/rabbitmq.sh start >"$work/rabbit-start.log" 2>&1; then
  sleep 2
  suite "rabbitmq" 61623 61624
  rabbit="measured ($(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null))"
else
  rabbit="could not be started ($(tail -1 "$work/rabbit-start.log"))"
fi
scripts/peers/rabbitmq.sh stop >/dev/null 2>&1
echo "rabbitmq: $rabbit"
python3 - "$raw" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
get = {(r["broker"], r["name"]): r["run"] for r in rows}
def rate(b, n):
    run = get.get((b, n), {})
    return run.get("rate") if n == "handshakes" else run.get("delivery_rate")
print("| scenario | romp plain | romp TLS | TLS / plain | rabbitmq plain | rabbitmq TLS | romp TLS / rabbitmq TLS |")
print("|---|---|---|---|---|---|---|")
for s in ["queue 1->1", "topic 1->10"]:
    rp, rt = rate("romp", s + " plain"), rate("romp", s + " tls")
    qp, qt = rate("rabbitmq", s + " plain"), rate("rabbitmq", s + " tls")
    f = lambda v: f"{v:,.0f}" if v else "-"
    ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
    print(f"| {s} | {f(rp)} | {f(rt)} | {ratio(rt, rp)} | {f(qp)} | {f(qt)} | {ratio(rt, qt)} |")
w, ws = rate("romp", "queue 1->1 ws"), rate("romp", "queue 1->1 wss")
if w and ws:
    print(f"| queue 1->1 over WebSocket (romp only) | {w:,.0f} | {ws:,.0f} | {ws / w:.2f}x | | | |")
h, hq = rate("romp", "handshakes"), rate("rabbitmq", "handshakes")
print(f"| full handshakes/s (ECDSA P-256) | | {h or 0:,.0f} | | | {hq or 0:,.0f} | {(h / hq if h and hq else 0):.2f}x |")
PY
