#!/usr/bin/env bash
# Run the benchmark matrix against romp and each peer in one go; write bench/REPORT.md and
# bench/throughput.svg. Usage: scripts/compare.sh [RUNS=3] [SECONDS=5]
# Environment: BENCH_OUT (output folder, default bench), IDLE_SESSIONS (default 9000).
# Peers: RabbitMQ (scripts/peers/rabbitmq.sh), ActiveMQ Classic (scripts/peers/activemq.sh) and
# the old romp 0.5.2 (scripts/peers/oldromp.sh);
# a peer that cannot be installed or started is reported as such, not silently skipped.
# Every run is checked for lost, duplicated and reordered messages by romp-bench itself, and
# every queue run opens with an unwindowed burst whose losses are reported apart (and fail it).
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
secs=${2:-5}
out=${BENCH_OUT:-bench}
mkdir -p "$out"
raw="$out/raw.jsonl"
: >"$raw"
cargo build --release -q --bin romp --bin romp-bench || exit 1
. scripts/lib.sh

# name|romp-bench arguments. Core scenarios run against every broker; the extra ones against
# romp and the null broker (the tool's own ceiling) only, to keep `make bench` short.
core=(
  "queue 1->1|--kind queue --producers 1 --consumers 1"
  "topic 1->10|--kind topic --producers 1 --consumers 10"
  "10 partitioned queues|--kind queue --producers 10 --consumers 10 --destinations 10"
  "fan-in queue 10->1|--kind queue --producers 10 --consumers 1"
  "competing consumers queue 1->4|--kind queue --producers 1 --consumers 4"
  "topic 1->1 (solo)|--kind topic --producers 1 --consumers 1"
  "topic 1->1 + 1 slow subscriber|--kind topic --producers 1 --consumers 1 --slow 1 --slow-rate 200"
)
extra=(
  "queue 1->1, 1 KiB|--kind queue --producers 1 --consumers 1 --size 1024"
  "queue 1->1, 16 KiB|--kind queue --producers 1 --consumers 1 --size 16384"
  "queue 1->1, client-individual ack|--kind queue --producers 1 --consumers 1 --ack client-individual"
  "queue 1->1, client ack|--kind queue --producers 1 --consumers 1 --ack client"
  "open loop: queue 1->1 at 50k msg/s|--kind queue --producers 1 --consumers 1 --rate 50000"
)

# STOMP over WebSocket (romp's web port, RabbitMQ's Web-STOMP); the path is appended per broker.
websocket=(
  "WebSocket: queue 1->1|--kind queue --producers 1 --consumers 1 --ws"
  "WebSocket: topic 1->10|--kind topic --producers 1 --consumers 10 --ws"
)
with_path() { # path scenario... -> the scenarios with the WebSocket path appended
  local path=$1 s
  shift
  for s in "$@"; do printf '%s\n' "$s $path"; done
}

latency() { # broker port: request/reply percentiles beside the TCP echo floor, one line per run
  local line r
  for r in $(seq 1 "$runs"); do
    line=$(timeout $((secs + 40)) ./target/release/romp-bench --port "$2" --latency 1 --size 100 --duration "$secs" --warmup 1 \
      --queue-prefix "/queue/cmp-$r-" --json 2>/dev/null | tail -1)
    [ -n "$line" ] || line='{"failed":true}'
    echo "{\"broker\":\"$1\",\"latency\":$line}" >>"$raw"
    echo "$1 / latency / run $r: $line" >&2
  done
}

run_set() { # broker port pid scenario...
  local broker=$1 port=$2 pid=$3
  shift 3
  local pidarg=()
  [ -n "$pid" ] && pidarg=(--broker-pid "$pid")
  for s in "$@"; do
    local name=${s%%|*} args=${s#*|}
    for r in $(seq 1 "$runs"); do
      local line
      # Unique destinations per run so nothing is left over from the previous one.
      line=$(timeout $((secs + 40)) ./target/release/romp-bench --port "$port" $args --duration "$secs" --warmup 1 "${pidarg[@]}" \
        --queue-prefix "/queue/cmp-$r-" --topic-prefix "/topic/cmp-$r-" --json 2>/dev/null | tail -1)
      [ -n "$line" ] || line='{"failed":true}'
      echo "{\"broker\":\"$broker\",\"scenario\":\"$name\",\"run\":$r,\"result\":$line}" >>"$raw"
      echo "$broker / $name / run $r: $line" >&2
      # A broker that hung or died in a scenario (the old romp does, now and then) is not given
      # the remaining runs of it: each would wait out the timeout again (`make bench` stays short).
      [ "$line" = '{"failed":true}' ] && break
    done
  done
}

status=()
# The tool's own ceiling: a minimal forwarder inside romp-bench, on the same cores.
port=$(free_port)
./target/release/romp-bench --null-broker --port "$port" 2>/dev/null &
npid=$!
sleep 0.3
run_set "null broker" "$port" "" "${core[@]}" "${extra[@]}"
kill "$npid"; wait "$npid" 2>/dev/null
status+=("null broker: the tool's ceiling (a one-thread forwarder without STOMP semantics, inside romp-bench)")

# romp itself, with its default workers (one per core), then with one worker for scaling.
port=$(free_port)
wport=$(free_port)
./target/release/romp --port "$port" --web-port "$wport" --admin-port 0 >/tmp/romp-compare.log 2>&1 &
rpid=$!
sleep 0.5
latency romp "$port"
run_set romp "$port" "$rpid" "${core[@]}" "${extra[@]}"
mapfile -t ws_romp < <(with_path /stomp "${websocket[@]}")
run_set romp "$wport" "$rpid" "${ws_romp[@]}"
kill -TERM "$rpid"; wait "$rpid" 2>/dev/null
port=$(free_port)
./target/release/romp --port "$port" --web-port 0 --admin-port 0 --workers 1 >/tmp/romp-compare-1.log 2>&1 &
rpid=$!
sleep 0.5
run_set "romp, 1 worker" "$port" "$rpid" "${core[@]:0:3}"
kill -TERM "$rpid"; wait "$rpid" 2>/dev/null
status+=("romp: measured ($(nproc) workers, and 1 worker for scaling)")

# Idle sessions: RSS per CONNECTed session with one subscription. The broker runs with
# transparent huge pages off (prctl PR_SET_THP_DISABLE, inherited through exec) so RSS moves in
# 4 KiB pages, not 2 MiB steps. 18,000 sessions: the hard open-files limit here is 20,000 per
# process (broker and tool alike), so max_connections is raised just for this run.
idle_n=${IDLE_SESSIONS:-18000}
idle_conf=$(mktemp /tmp/romp-idle-XXXXXX.toml)
echo "max_connections = $((idle_n + 100))" >"$idle_conf"
port=$(free_port)
python3 -c "
import ctypes, os, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
os.execv(sys.argv[1], sys.argv[1:])" ./target/release/romp --config "$idle_conf" --port "$port" --web-port 0 --admin-port 0 >/dev/null 2>&1 &
rpid=$!
sleep 0.5
line=$(timeout 300 ./target/release/romp-bench --port "$port" --idle "$idle_n" --broker-pid "$rpid" --json 2>/dev/null | tail -1)
[ -n "$line" ] || line='{"failed":true}'
echo "{\"broker\":\"romp\",\"idle\":$line}" >>"$raw"
echo "romp / idle: $line" >&2
kill -TERM "$rpid"; wait "$rpid" 2>/dev/null
rm -f "$idle_conf"

if scripts/peers/rabbitmq.sh start >/tmp/rabbit-start.log 2>&1; then
  latency rabbitmq 61623
  run_set rabbitmq 61623 "$(cat /tmp/romp-peer-rabbitmq/pid 2>/dev/null)" "${core[@]}"
  mapfile -t ws_rabbit < <(with_path /ws "${websocket[@]}")
  run_set rabbitmq 15675 "$(cat /tmp/romp-peer-rabbitmq/pid 2>/dev/null)" "${ws_rabbit[@]}"
  status+=("rabbitmq: measured ($(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null))")
else
  status+=("rabbitmq: could not be started ($(tail -1 /tmp/rabbit-start.log))")
fi
scripts/peers/rabbitmq.sh stop >/dev/null 2>&1

if scripts/peers/activemq.sh start >/tmp/activemq-start.log 2>&1; then
  latency activemq 61643
  run_set activemq 61643 "$(cat /tmp/romp-peer-activemq/pid 2>/dev/null)" "${core[@]:0:3}"
  status+=("activemq: measured, first three scenarios ($(dpkg-query -W -f='${Version}' activemq 2>/dev/null), non-persistent, STOMP over NIO)")
else
  status+=("activemq: could not be started ($(tail -1 /tmp/activemq-start.log))")
fi
scripts/peers/activemq.sh stop >/dev/null 2>&1

if scripts/peers/oldromp.sh start >/tmp/oldromp-start.log 2>&1; then
  latency "old romp 0.5.2" 61633
  run_set "old romp 0.5.2" 61633 "$(cat /tmp/romp-peer-oldromp/pid 2>/dev/null)" "${core[@]}"
  status+=("old romp 0.5.2: measured")
else
  status+=("old romp 0.5.2: could not be started ($(tail -1 /tmp/oldromp-start.log))")
fi
scripts/peers/oldromp.sh stop >/dev/null 2>&1

printf '%s\n' "${status[@]}" >"$out/peers.txt"
python3 scripts/report.py "$raw" "$out" "$runs" "$secs"
