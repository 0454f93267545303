#!/usr/bin/env bash
# Interleaved A/B of two revisions of the broker with one load tool, same flags, same machine:
# builds each revision in its own worktree, then alternates which goes first in every round.
# Usage: scripts/ab.sh REV_A REV_B [ROUNDS=4] [SECONDS=5]. Writes target/ab/ab.jsonl; prints medians.
# Scenarios: queue 1->1, topic 1->10, request/reply (the "must not change" rows of issue 11),
# fan-in 10->1 and client-individual acks (those of issue 12). Queue runs open with the
# tool's unwindowed burst; a run that lost anything is printed as LOSS.
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-4} secs=${4:-5}
out=target/ab/ab.jsonl
mkdir -p target/ab; : >"$out"
build() { # rev -> path of its romp binary (worktrees are named by commit, so a moving name
  # such as HEAD is never served from an old checkout)
  local sha dir
  sha=$(git rev-parse --short "$1^{commit}")
  dir=target/ab/$sha
  [ -d "$dir" ] || git worktree add -f -q "$dir" "$sha"
  (cd "$dir" && CARGO_TARGET_DIR=target cargo build -q --release --bin romp >&2)
  echo "$dir/target/release/romp"
}
bin_a=$(build "$a"); bin_b=$(build "$b")
cargo build -q --release --bin romp-bench
. scripts/lib.sh
run_one() { # label binary scenario args...
  local label=$1 bin=$2 name=$3; shift 3
  local p w m pid line
  p=$(free_port); w=$(free_port); m=$(free_port)
  "$bin" --port "$p" --web-port "$w" --admin-port "$m" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$p") 2>/dev/null && break; sleep 0.1; done
  # A run that lost messages exits non-zero; its JSON line is still the result.
  line=$(timeout $((secs + 40)) ./target/release/romp-bench --port "$p" "$@" --duration "$secs" --warmup 1 --json 2>/dev/null | tail -1) || true
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "{\"rev\":\"$label\",\"scenario\":\"$name\",\"result\":${line:-null}}" >>"$out"
}
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
  for who in $order; do
    if [ "$who" = A ]; then rev=$a bin=$bin_a; else rev=$b bin=$bin_b; fi
    run_one "$rev" "$bin" "queue 1->1" --kind queue --producers 1 --consumers 1
    run_one "$rev" "$bin" "topic 1->10" --kind topic --producers 1 --consumers 10
    run_one "$rev" "$bin" "request/reply" --latency 1 --size 100
    run_one "$rev" "$bin" "fan-in 10->1" --kind queue --producers 10 --consumers 1
    run_one "$rev" "$bin" "client-indiv" --kind queue --producers 1 --consumers 1 --ack client-individual
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    j = json.loads(line); r = j["result"]
    if not r: continue
    k = (j["scenario"], j["rev"])
    d[k].append(r["delivery_rate"] if "delivery_rate" in r else r["p99_us"])
    if r.get("lost") or r.get("duplicated") or r.get("reordered"):
        print(f"LOSS {j['scenario']} {j['rev']}: lost {r.get('lost')} (burst {r.get('burst_lost')}), dup {r.get('duplicated')}")
for (s, rev), v in sorted(d.items()):
    unit = "msg/s" if "reply" not in s else "p99 us"
    print(f"{s:14} {rev:12} median {statistics.median(v):>12.1f} {unit}  runs {[round(x, 1) for x in v]}")
PY
