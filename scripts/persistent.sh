#!/usr/bin/env bash
# Persistent messaging, romp beside RabbitMQ in one run: queue 1->1 (and 10->1), 100 B,
# persistent:true, receipts per SEND at 1 and 64 in flight, and 10 producers with windows of
# 1,000 and a receipt every 100; plus the disk's own floor (fdatasync per 100-byte append) on
# the file system that holds the logs. Usage: scripts/persistent.sh [SECONDS=5]
# RabbitMQ: classic durable queues (no fsync before the receipt: its receipts do not mean "on
# disk") and quorum queues (x-queue-type:quorum, fsync before the receipt). A peer that cannot
# be installed or started is reported as such. ActiveMQ Classic: KahaDB, journal fsynced
# before the receipt. Output: bench/persistent.jsonl, and a table.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
cargo build --release -q --bin romp --bin romp-bench || exit 1
. scripts/lib.sh
raw=$(bench_file persistent.jsonl)
scenarios=(
  "1 in flight|--producers 1 --receipt-window 1"
  "64 in flight|--producers 1 --receipt-window 64"
  "10 producers, window 1000, receipt every 100|--producers 10 --receipt-window 1000 --receipt-every 100"
)
run() { # broker port prefix extra-args...
  local broker=$1 port=$2 prefix=$3 s name args line
  shift 3
  for s in "${scenarios[@]}"; do
    name=${s%%|*} args=${s#*|}
    # shellcheck disable=SC2086
    line=$(timeout $((secs + 60)) ./target/release/romp-bench --port "$port" --kind queue --consumers 1 --persistent $args \
      --queue-prefix "$prefix" --duration "$secs" --warmup 1 --json "$@" 2>/dev/null | tail -1)
    [ -n "$line" ] || line='{"failed":true}'
    echo "{\"broker\":\"$broker\",\"name\":\"$name\",\"run\":$line}" >>"$raw"
    echo "$broker / $name: $line" >&2
  done
}
data=$(mktemp -d "${TMPDIR:-/tmp}/romp-persistent.XXXX")
floor=$(./target/release/romp-bench --fsync-floor "$data" --duration "$secs" --warmup 0.5 --json | tail -1)
echo "{\"broker\":\"disk\",\"name\":\"fdatasync floor\",\"run\":$floor}" >>"$raw"
echo "disk: $floor" >&2
port=$(free_port)
./target/release/romp --port "$port" --web-port 0 --admin-port 0 --data-dir "$data" >/tmp/romp-persistent.log 2>&1 &
pid=$!
sleep 1
run romp "$port" "/queue/p-$RANDOM-"
kill "$pid"; wait "$pid" 2>/dev/null
rm -rf "$data"
if scripts/peers/rabbitmq.sh start >/tmp/rabbit-start.log 2>&1; then
  run "rabbitmq classic" 61623 "/queue/pc-$RANDOM-"
  run "rabbitmq quorum" 61623 "/queue/pq-$RANDOM-" --header x-queue-type:quorum
  rabbit="measured ($(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null))"
else
  rabbit="could not be started ($(tail -1 /tmp/rabbit-start.log))"
fi
scripts/peers/rabbitmq.sh stop >/dev/null 2>&1
echo "rabbitmq: $rabbit"
if ACTIVEMQ_PERSISTENT=true scripts/peers/activemq.sh start >/tmp/activemq-start.log 2>&1; then
  run "activemq kahadb" 61643 "/queue/pa-$RANDOM-"
  activemq="measured ($(dpkg-query -W -f='${Version}' activemq 2>/dev/null))"
else
  activemq="could not be started ($(tail -1 /tmp/activemq-start.log))"
fi
scripts/peers/activemq.sh stop >/dev/null 2>&1
echo "activemq: $activemq"
python3 - "$raw" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
floor = next((r["run"] for r in rows if r["broker"] == "disk"), {})
print(f"disk floor: {floor.get('rate', 0):.0f} fdatasync/s (p50 {floor.get('p50_us', 0):.0f} us)")
print("| broker | scenario | msg/s | receipt p50 us | vs floor | lost |")
print("|---|---|---|---|---|---|")
for r in rows:
    if r["broker"] == "disk":
        continue
    run = r["run"]
    if run.get("failed"):
        print(f"| {r['broker']} | {r['name']} | failed | | | |")
        continue
    rate = run.get("send_rate", 0)
    p50 = run.get("receipts", {}).get("p50_us", 0)
    ratio = rate / floor["rate"] if floor.get("rate") else 0
    print(f"| {r['broker']} | {r['name']} | {rate:.0f} | {p50:.0f} | {ratio:.2f}x | {run.get('lost')} |")
PY
