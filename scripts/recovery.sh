#!/usr/bin/env bash
# Recovery time of the release binary: fill ten durable queues with at least N persistent
# 100-byte messages (romp-bench --consumers 0: receipted, nothing consumed), kill -9 the broker,
# and start it again RUNS times on the same data directory (workers 2, then 1, then 2, ...).
# Each start reports how many messages it recovered and how long the start's recovery took
# (read every log, rewrite the live state into a new generation, sync, switch): the
# romp_journal_recovery_milliseconds gauge, checked against the broker's log line.
# Usage: scripts/recovery.sh [N=1000000] [RUNS=3]. Output: bench/recovery.jsonl and a table.
set -uo pipefail
cd "$(dirname "$0")/.."
want=${1:-1000000}
runs=${2:-3}
cargo build --release -q --bin romp --bin romp-bench || exit 1
. scripts/lib.sh
raw=$(bench_file recovery.jsonl)
work=$(mktemp -d "${TMPDIR:-/tmp}/romp-recovery.XXXX")
cfg="$work/romp.toml"
port=$(free_port)
admin=$(free_port)
cat >"$cfg" <<EOF
ports = [$port]
web_port = 0
admin_port = $admin
pin_workers = false
max_messages = 10000000
max_queue_bytes = 4294967296
data_dir = "$work/data"
EOF
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
metric() { curl -s "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
depth() { curl -s "http://127.0.0.1:$admin/metrics" | awk '/^romp_destination_depth\{/ { s += $2 } END { print s + 0 }'; }
start() { # workers
  ./target/release/romp --config "$cfg" --workers "$1" >"$work/romp.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -s "http://127.0.0.1:$admin/health" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "the broker did not start: $(tail -3 "$work/romp.log")" >&2
  exit 1
}
start 2
have=0
while [ "$have" -lt "$want" ]; do
  ./target/release/romp-bench --port "$port" --kind queue --producers 10 --consumers 0 --destinations 10 \
    --queue-prefix "/queue/recovery-" --persistent --receipt-window 1000 --receipt-every 100 \
    --duration 1 --warmup 0 --json >/dev/null 2>&1 || { echo "romp-bench failed" >&2; exit 1; }
  have=$(depth)
  echo "filled: $have messages" >&2
done
bytes=$(du -sb "$work/data" | cut -f1)
kill -9 "$pid"; wait "$pid" 2>/dev/null
for run in $(seq 1 "$runs"); do
  workers=$(( run % 2 == 1 ? 1 : 2 ))
  start "$workers"
  got=$(metric romp_journal_recovered_messages)
  ms=$(metric romp_journal_recovery_milliseconds)
  line=$(grep -o 'durable log in .*' "$work/romp.log" | head -1)
  echo "{\"run\":$run,\"workers\":$workers,\"messages\":$got,\"milliseconds\":$ms,\"data_bytes_before\":$bytes}" >>"$raw"
  echo "start $run ($workers workers): $line" >&2
  kill -9 "$pid"; wait "$pid" 2>/dev/null
  pid=
done
python3 - "$raw" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| start | workers | messages recovered | recovery ms | messages/s |")
print("|---|---|---|---|---|")
for r in rows:
    rate = r["messages"] / (r["milliseconds"] / 1000) if r["milliseconds"] else 0
    print(f"| {r['run']} | {r['workers']} | {r['messages']:,} | {r['milliseconds']:,} | {rate:,.0f} |")
PY
