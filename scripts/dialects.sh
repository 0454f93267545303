#!/usr/bin/env bash
# What the dialects cost, in one run on this machine (100 B bodies, auto ack, 2 workers, memory
# only): selectors, a wildcard subscription over 1,000 topics, mixed priorities, each beside
# the same load without the feature; and the exact-name queue and topic figures of this build
# beside those of a base build (BASE_BIN, the build before the dialects), interleaved round by
# round so drift on this shared machine hits both alike. Figures are medians of ROUNDS rounds.
# Usage: scripts/dialects.sh [SECONDS=5] [ROUNDS=3]. Output: bench/dialects.jsonl and a table.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
base_bin=${BASE_BIN:-}
cargo build --release -q --bin romp --bin romp-bench || exit 1
. scripts/lib.sh
raw=$(bench_file dialects.jsonl)
work=$(mktemp -d "${TMPDIR:-/tmp}/romp-dialects.XXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
start() { # binary
  port=$(free_port)
  "$1" --port "$port" --web-port 0 --admin-port 0 --workers 2 --data-dir "" >"$work/romp.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port)).close()" 2>/dev/null && return
    sleep 0.05
  done
}
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; }
bench() { # build name args...
  local build=$1 name=$2 line
  shift 2
  line=$(timeout $((secs + 60)) ./target/release/romp-bench --port "$port" --duration "$secs" --warmup 1 --json "$@" 2>/dev/null | tail -1)
  [ -n "$line" ] || line='{"failed":true}'
  echo "{\"build\":\"$build\",\"name\":\"$name\",\"run\":$line}" >>"$raw"
  echo "$build / $name: $line" >&2
}
for r in $(seq "$rounds"); do
  echo "== round $r" >&2
  for build in this base; do
    bin=./target/release/romp
    if [ $build = base ]; then
      [ -n "$base_bin" ] || continue
      bin=$base_bin
    fi
    start "$bin"
    bench $build "queue 1->1" --kind queue
    bench $build "topic 1->10" --kind topic --consumers 10
    if [ $build = this ]; then
      bench this "queue 1->10" --kind queue --consumers 10
      bench this "queue 1->10, each consumer with a selector" --kind queue --consumers 10 --header "type:x" --header "selector:type = 'x'"
      bench this "topic 1->1" --kind topic
      bench this "topic 1->1, selector" --kind topic --header "type:x" --header "selector:type = 'x'"
      bench this "topic 1->1, wildcard over 1,000 topics" --kind topic --topic-prefix /topic/bench. --destinations 1000 --subscribe-to '/topic/bench.*' --spread
      bench this "queue 10->1" --kind queue --producers 10
      bench this "queue 10->1, mixed priorities" --kind queue --producers 10 --priorities
    fi
    stop
  done
done
python3 - "$raw" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for l in open(sys.argv[1]):
    r = json.loads(l)
    run = r["run"]
    if run.get("failed") or run.get("lost") or run.get("duplicated"):
        print(f"FAILED or lossy: {r}")
        continue
    runs[(r["build"], r["name"])].append(run["delivery_rate"])
med = {k: statistics.median(v) for k, v in runs.items()}
f = lambda v: f"{v:,.0f}" if v else "-"
print("| exact names | this build | base build | this / base |")
print("|---|---|---|---|")
for s in ["queue 1->1", "topic 1->10"]:
    a, b = med.get(("this", s)), med.get(("base", s))
    print(f"| {s} | {f(a)} | {f(b)} | {a / b:.2f}x |" if a and b else f"| {s} | {f(a)} | {f(b)} | - |")
print()
print("| with the feature | deliveries/s | without it | deliveries/s | ratio |")
print("|---|---|---|---|---|")
for feat, plain in [("queue 1->10, each consumer with a selector", "queue 1->10"), ("topic 1->1, selector", "topic 1->1"),
                    ("topic 1->1, wildcard over 1,000 topics", "topic 1->1"), ("queue 10->1, mixed priorities", "queue 10->1")]:
    a, b = med.get(("this", feat)), med.get(("this", plain))
    print(f"| {feat} | {f(a)} | {plain} | {f(b)} | {a / b:.2f}x |" if a and b else f"| {feat} | {f(a)} | {plain} | {f(b)} | - |")
PY
