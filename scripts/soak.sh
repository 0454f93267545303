#!/usr/bin/env bash
# Soak: a steady mixed load against a release broker for a while, sampling its RSS and open
# descriptors every few seconds. Usage: scripts/soak.sh [SECONDS=300] [OUT_DIR=soak-out]
# Load (all romp-bench, restarted every 20 s so connections churn the whole time):
#   queues 4->4 with client-individual acks, topic 1->5 fan-out, 8 partitioned queues 8->8,
#   plus a loop of quick connect/subscribe/disconnect runs.
# Writes OUT_DIR/samples.csv (seconds,rss_kib,fds), OUT_DIR/soak.svg, OUT_DIR/summary.txt (by
# scripts/soak_report.py), and exits non-zero if RSS grows (after a 20% warm-up, the mean of each
# quarter must stay within 10% of the first quarter's mean), descriptors leak, or any bench run
# reported a lost, duplicated, reordered or corrupt message.
set -euo pipefail
secs=${1:-300}
out=${2:-soak-out}
cd "$(dirname "$0")/.."
cargo build --release -q --bin romp --bin romp-bench
mkdir -p "$out"
. scripts/lib.sh
port=$(free_port)
./target/release/romp --port "$port" --web-port 0 --admin-port 0 --workers 2 >"$out/broker.log" 2>&1 &
broker=$!
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; kill -TERM "$broker" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
sleep 0.5
end=$((SECONDS + secs))
bench() { ./target/release/romp-bench --port "$port" --threads 1 --warmup 0 --json "$@"; }
load() { # one scenario, restarted until the end; every run must be clean
  while [ $SECONDS -lt $end ]; do
    bench --duration 20 "$@" >>"$out/bench.jsonl" 2>>"$out/bench.err" || echo "FAILED: $*" >>"$out/failures.txt"
  done
}
load --kind queue --producers 4 --consumers 4 --destinations 4 --ack client-individual --window 4000 --queue-prefix /queue/soak-ack- & pids+=($!)
load --kind topic --producers 1 --consumers 5 --window 2000 --topic-prefix /topic/soak-fan- & pids+=($!)
load --kind queue --producers 8 --consumers 8 --destinations 8 --window 2000 --size 512 --queue-prefix /queue/soak-part- & pids+=($!)
(while [ $SECONDS -lt $end ]; do bench --duration 0.2 --producers 2 --consumers 2 --window 100 --queue-prefix "/queue/soak-churn-$RANDOM-" >/dev/null 2>&1 || true; done) & pids+=($!)
echo "seconds,rss_kib,fds" >"$out/samples.csv"
start=$SECONDS
while [ $SECONDS -lt $end ]; do
  rss=$(awk '/^VmRSS:/ {print $2}' /proc/$broker/status)
  fds=$(ls /proc/$broker/fd | wc -l)
  echo "$((SECONDS - start)),$rss,$fds" >>"$out/samples.csv"
  sleep 5
done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
sleep 2
rss=$(awk '/^VmRSS:/ {print $2}' /proc/$broker/status); fds=$(ls /proc/$broker/fd | wc -l)
echo "$((SECONDS - start)),$rss,$fds" >>"$out/samples.csv"
python3 scripts/soak_report.py "$out"
status=$?
if [ -s "$out/failures.txt" ]; then echo "bench runs failed:"; cat "$out/failures.txt"; status=1; fi
exit $status
