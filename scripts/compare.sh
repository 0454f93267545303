#!/usr/bin/env bash
# Run the benchmark matrix against romp and each peer in one go; write bench/REPORT.md and
# bench/throughput.svg. Usage: scripts/compare.sh [RUNS=3] [SECONDS=5]
# Peers: RabbitMQ (scripts/peers/rabbitmq.sh) and the old romp 0.5.2 (scripts/peers/oldromp.sh);
# a peer that cannot be installed or started is reported as such, not silently skipped.
# Every run is checked for lost, duplicated and reordered messages by romp-bench itself.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
secs=${2:-5}
out=bench
mkdir -p "$out"
raw="$out/raw.jsonl"
: >"$raw"
cargo build --release -q --bin romp --bin romp-bench || exit 1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# name|romp-bench arguments
scenarios=(
  "queue 1->1|--kind queue --producers 1 --consumers 1"
  "topic 1->10|--kind topic --producers 1 --consumers 10"
  "10 partitioned queues|--kind queue --producers 10 --consumers 10 --destinations 10"
)

latency() { # broker port: request/reply p99 beside the TCP echo floor, one run
  local line
  line=$(timeout $((secs + 40)) ./target/release/romp-bench --port "$2" --latency 1 --size 100 --duration "$secs" --warmup 1 \
    --queue-prefix "/queue/cmp-1-" --json 2>/dev/null | tail -1)
  [ -n "$line" ] || line='{"failed":true}'
  echo "{\"broker\":\"$1\",\"latency\":$line}" >>"$raw"
  echo "$1 / latency: $line" >&2
}

measure() { # broker port
  local broker=$1 port=$2
  latency "$broker" "$port"
  for s in "${scenarios[@]}"; do
    local name=${s%%|*} args=${s#*|}
    for r in $(seq "$runs"); do
      local line
      # Unique destinations per run so nothing is left over from the previous one.
      line=$(timeout $((secs + 40)) ./target/release/romp-bench --port "$port" $args --size 100 --duration "$secs" --warmup 1 \
        --queue-prefix "/queue/cmp-$r-" --topic-prefix "/topic/cmp-$r-" --json 2>/dev/null | tail -1)
      [ -n "$line" ] || line='{"failed":true}'
      echo "{\"broker\":\"$broker\",\"scenario\":\"$name\",\"run\":$r,\"result\":$line}" >>"$raw"
      echo "$broker / $name / run $r: $line" >&2
    done
  done
}

status=()
# romp itself
port=$(free_port)
./target/release/romp --port "$port" --web-port 0 --admin-port 0 >/tmp/romp-compare.log 2>&1 &
rpid=$!
sleep 0.5
measure romp "$port"
kill -TERM "$rpid"; wait "$rpid" 2>/dev/null
status+=("romp: measured")

if scripts/peers/rabbitmq.sh start >/tmp/rabbit-start.log 2>&1; then
  measure rabbitmq 61623
  status+=("rabbitmq: measured ($(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null))")
else
  status+=("rabbitmq: could not be started ($(tail -1 /tmp/rabbit-start.log))")
fi
scripts/peers/rabbitmq.sh stop >/dev/null 2>&1

if scripts/peers/oldromp.sh start >/tmp/oldromp-start.log 2>&1; then
  measure "old romp 0.5.2" 61633
  status+=("old romp 0.5.2: measured")
else
  status+=("old romp 0.5.2: could not be started ($(tail -1 /tmp/oldromp-start.log))")
fi
scripts/peers/oldromp.sh stop >/dev/null 2>&1

printf '%s\n' "${status[@]}" >"$out/peers.txt"
python3 scripts/report.py "$raw" "$out" "$runs" "$secs"
